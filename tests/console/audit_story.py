"""A scripted Okta history for the audit section's tests: projects and roles made by the host app (management
API), users created, pushed into groups, removed and deactivated by Okta (SCIM), as tests/e2e/test_audit_api.py
builds its histories."""

from __future__ import annotations

import asyncio
import datetime
import html
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from app.services import tenancy
from tests.conftest import okta_user
from tests.console.helpers import ConsoleOrg

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM = "/scim/v2"
HOSTILE = "<script>alert('x')</script>@audit.example"


@dataclass
class Story:
    org: ConsoleOrg
    auditor: dict[str, str]
    ann: str
    bob: str
    eve: str  # a userName with markup in it
    admin_group: str
    viewer_group: str
    start: datetime.datetime
    middle: datetime.datetime
    end: datetime.datetime


async def db_now(pool: asyncpg.Pool) -> datetime.datetime:
    moment: datetime.datetime = await pool.fetchval("SELECT clock_timestamp()")
    return moment


def members(*user_ids: str) -> dict[str, Any]:
    return {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "add", "path": "members", "value": [{"value": user_id} for user_id in user_ids]}
        ],
    }


async def _created(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    created: str = answer.json()["id"]
    return created


async def okta_history(client: httpx.AsyncClient, pool: asyncpg.Pool, org: ConsoleOrg) -> Story:
    """Apollo × {Admin, Viewer}; ann and eve pushed into Admin, bob into Viewer; then ann removed from Admin,
    bob added to it, and ann deactivated. `middle` is between the two halves."""
    scim = org.tenant.headers
    async with pool.acquire() as connection:
        _, auditor = await tenancy.issue_token(connection, org.tenant.org.org_id, scope="auditor")
    start = await db_now(pool)
    for kind, name in (("projects", "Apollo"), ("roles", "Admin"), ("roles", "Viewer")):
        await _created(
            await client.post(f"/api/v1/orgs/{org.org_id}/{kind}", json={"name": name}, headers=org.admin)
        )
    suffix = uuid.uuid4().hex[:6]
    ann, bob, eve = [
        await _created(await client.post(f"{SCIM}/Users", json=okta_user(name), headers=scim))
        for name in (f"ann-{suffix}@audit.example", f"bob-{suffix}@audit.example", HOSTILE)
    ]
    listed = (await client.get(f"{SCIM}/Groups", headers=scim)).json()["Resources"]
    groups = {group["displayName"].rsplit("-", 1)[-1]: group["id"] for group in listed}
    admin_group, viewer_group = groups["Admin"], groups["Viewer"]
    for group, user in ((admin_group, ann), (admin_group, eve), (viewer_group, bob)):
        assert (await client.patch(f"{SCIM}/Groups/{group}", json=members(user), headers=scim)).is_success
    middle = await db_now(pool)
    removal = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f'members[value eq "{ann}"]'}]}
    assert (await client.patch(f"{SCIM}/Groups/{admin_group}", json=removal, headers=scim)).is_success
    assert (await client.patch(f"{SCIM}/Groups/{admin_group}", json=members(bob), headers=scim)).is_success
    deactivation = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert (await client.patch(f"{SCIM}/Users/{ann}", json=deactivation, headers=scim)).is_success
    end = await db_now(pool)
    await readable(pool, org)
    return Story(
        org,
        {"Authorization": f"Bearer {auditor}"},
        ann,
        bob,
        eve,
        admin_group,
        viewer_group,
        start,
        middle,
        end,
    )


async def readable(pool: asyncpg.Pool, org: ConsoleOrg) -> None:
    """Wait until the organization's events are below every running transaction. Transaction ids are the
    whole server's: another database's long transaction (another checkout's tests) hides later commits from
    the commit-safe readers the history and the as-of view are, until it ends."""
    written = await pool.fetchval("SELECT max(tx) FROM events WHERE org_id = $1", org.tenant.org.org_id)
    hidden = "SELECT pg_snapshot_xmin(pg_current_snapshot()) <= $1::xid8"
    while True:
        if not await pool.fetchval(hidden, written):
            return
        await asyncio.sleep(0.01)


_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def table_rows(page: str) -> list[str]:
    """The text of each row of the page's tables' bodies, tags removed and entities read."""
    body_rows = []
    for body in re.findall(r"<tbody>(.*?)</tbody>", page, re.DOTALL):
        body_rows += [" ".join(html.unescape(_TAG.sub(" ", row)).split()) for row in _ROW.findall(body)]
    return body_rows
