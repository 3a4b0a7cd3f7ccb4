"""Auditors' queries: history, replay to an instant, access review; over /audit with the auditor scope, and
through the CLI."""

import datetime
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager

from app.http.app import create_app
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.catalog import Project
from eventstore.records import Metadata
from eventstore.store import Transaction
from projections import audit
from tests.conftest import Tenant, okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ADMIN = Metadata("admin:auditee")


@dataclass
class Story:
    tenant: Tenant
    auditor: dict[str, str]
    ann: str
    bob: str
    admin_group: str
    viewer_group: str
    start: datetime.datetime
    middle: datetime.datetime
    end: datetime.datetime
    seen_at_middle: dict[str, Any]


async def db_now(pool: asyncpg.Pool) -> datetime.datetime:
    moment: datetime.datetime = await pool.fetchval("SELECT clock_timestamp()")
    return moment


def members(*user_ids: str, op: str = "add") -> dict[str, Any]:
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": op, "path": "members", "value": [{"value": user_id} for user_id in user_ids]}],
    }


async def scim_view(scim: httpx.AsyncClient) -> dict[str, Any]:
    users = (await scim.get("/Users")).json()["Resources"]
    groups = (await scim.get("/Groups")).json()["Resources"]
    return {
        "users": sorted((user["id"], user["userName"], user["active"]) for user in users),
        "groups": sorted(
            (group["displayName"], sorted(member["value"] for member in group.get("members", [])))
            for group in groups
        ),
    }


def replayed_view(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "users": sorted((user["id"], user["userName"], user["active"]) for user in report["users"]),
        "groups": sorted((group["displayName"], sorted(group["members"])) for group in report["groups"]),
    }


@pytest.fixture
async def story(scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool) -> Story:
    org_id = tenant.org.org_id
    async with pool.acquire() as connection:
        _, auditor_token = await tenancy.issue_token(connection, org_id, scope="auditor")
    start = await db_now(pool)
    await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    await services.catalog.create(ROLE, org_id, "Viewer", ADMIN)
    ann = (await scim.post("/Users", json=okta_user("ann@audit.example"))).json()["id"]
    bob = (await scim.post("/Users", json=okta_user("bob@audit.example"))).json()["id"]
    groups = {group["displayName"]: group["id"] for group in (await scim.get("/Groups")).json()["Resources"]}
    admin_group, viewer_group = groups["Statsig-Apollo-Admin"], groups["Statsig-Apollo-Viewer"]
    await scim.patch(f"/Groups/{admin_group}", json=members(ann))
    await scim.patch(f"/Groups/{viewer_group}", json=members(bob))
    middle = await db_now(pool)
    seen_at_middle = await scim_view(scim)
    await scim.patch(
        f"/Groups/{admin_group}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f'members[value eq "{ann}"]'}]},
    )
    await scim.patch(f"/Groups/{admin_group}", json=members(bob))
    await scim.patch(
        f"/Users/{ann}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"active": False, "title": "Former"}}],
        },
    )
    await services.catalog.rename(PROJECT, org_id, "Apollo", "Artemis", ADMIN)
    end = await db_now(pool)
    return Story(
        tenant,
        {"Authorization": f"Bearer {auditor_token}"},
        ann,
        bob,
        admin_group,
        viewer_group,
        start,
        middle,
        end,
        seen_at_middle,
    )


async def test_replay_to_an_earlier_instant_equals_what_scim_returned_then(
    http: httpx.AsyncClient, story: Story
) -> None:
    response = await http.get(
        "http://scim.test/audit/as-of", params={"at": story.middle.isoformat()}, headers=story.auditor
    )
    assert response.status_code == 200
    assert replayed_view(response.json()) == story.seen_at_middle
    assert story.seen_at_middle["groups"][0][0] == "Statsig-Apollo-Admin"


async def test_replay_to_now_equals_the_live_projections(
    http: httpx.AsyncClient, scim: httpx.AsyncClient, story: Story
) -> None:
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    replayed = (
        await http.get("http://scim.test/audit/as-of", params={"at": now.isoformat()}, headers=story.auditor)
    ).json()
    assert replayed_view(replayed) == await scim_view(scim)
    assert {group["displayName"] for group in replayed["groups"]} == {
        "Statsig-Artemis-Admin",
        "Statsig-Artemis-Viewer",
    }


async def test_access_review_shows_who_held_what_when_and_who_granted_and_revoked_it(
    http: httpx.AsyncClient, story: Story
) -> None:
    params = {"from": story.start.isoformat(), "to": story.end.isoformat()}
    body = (await http.get("http://scim.test/audit/access", params=params, headers=story.auditor)).json()
    token = f"token:{story.tenant.token_id}"
    rows = [
        (
            row["userName"],
            row["project"],
            row["role"],
            row["to"] is None,
            row["granted_by"],
            row["grant_cause"],
            row["revoked_by"],
            row["revoke_cause"],
        )
        for row in body["intervals"]
    ]
    assert rows == [
        ("ann@audit.example", "Apollo", "Admin", False, token, "push", token, "push"),
        ("bob@audit.example", "Apollo", "Viewer", True, token, "push", None, None),
        ("bob@audit.example", "Apollo", "Admin", True, token, "push", None, None),
    ]
    only_admin = (
        await http.get(
            "http://scim.test/audit/access", params={**params, "role": "admin"}, headers=story.auditor
        )
    ).json()["intervals"]
    assert [row["userName"] for row in only_admin] == ["ann@audit.example", "bob@audit.example"]
    before_any = (
        await http.get(
            "http://scim.test/audit/access",
            headers=story.auditor,
            params={
                "from": (story.start - datetime.timedelta(hours=2)).isoformat(),
                "to": (story.start - datetime.timedelta(hours=1)).isoformat(),
            },
        )
    ).json()["intervals"]
    assert before_any == []


async def test_access_review_filters_fold_case_as_scim_does(http: httpx.AsyncClient, story: Story) -> None:
    """Full-width letters fold to their ASCII forms (NFKC casefold), in the review's filters as in SCIM's."""
    params = {"from": story.start.isoformat(), "to": story.end.isoformat()}
    found = (
        await http.get(
            "http://scim.test/audit/access",
            params={**params, "user": "\uff22\uff2f\uff22@AUDIT.example", "role": "\uff21dmin"},
            headers=story.auditor,
        )
    ).json()["intervals"]
    assert [(row["userName"], row["role"]) for row in found] == [("bob@audit.example", "Admin")]


async def test_history_tells_each_change_in_words(http: httpx.AsyncClient, story: Story) -> None:
    ann = (
        await http.get("http://scim.test/audit/history", params={"user": story.ann}, headers=story.auditor)
    ).json()["events"]
    assert [event["change"] for event in ann] == [
        "provisioned user 'ann@audit.example', active True",
        "added to group 'Statsig-Apollo-Admin' (cause: push)",
        "removed from group 'Statsig-Apollo-Admin' (cause: push)",
        "profile: title = 'Former'",
        "deactivated",
    ]
    assert all(event["actor"] == f"token:{story.tenant.token_id}" for event in ann)
    group = (
        await http.get(
            "http://scim.test/audit/history", params={"group": story.admin_group}, headers=story.auditor
        )
    ).json()["events"]
    assert [event["type"] for event in group] == [
        "GroupCreated",
        "GroupLinked",
        "GroupMemberAdded",
        "GroupMemberRemoved",
        "GroupMemberAdded",
    ]
    by_admin = (
        await http.get(
            "http://scim.test/audit/history", params={"actor": "admin:auditee"}, headers=story.auditor
        )
    ).json()["events"]
    assert by_admin[-1]["change"] == "project renamed to 'Artemis'"
    windowed = (
        await http.get(
            "http://scim.test/audit/history",
            params={"since": story.middle.isoformat(), "until": story.end.isoformat()},
            headers=story.auditor,
        )
    ).json()["events"]
    assert windowed[0]["change"] == "removed from group 'Statsig-Apollo-Admin' (cause: push)"


async def test_auditor_tokens_read_audit_only_and_scim_tokens_never_read_it(
    http: httpx.AsyncClient, story: Story
) -> None:
    scim_token = story.tenant.headers
    for path in ("/audit/history", "/audit/head", "/audit/verify"):
        assert (await http.get(f"http://scim.test{path}", headers=scim_token)).status_code == 403
        assert (await http.get(f"http://scim.test{path}", headers={"Authorization": ""})).status_code == 401
        assert (await http.get(f"http://scim.test{path}", headers=story.auditor)).status_code == 200
        assert (await http.post(f"http://scim.test{path}", headers=story.auditor)).status_code == 405
    assert (await http.get("/Users", headers=story.auditor)).status_code == 403
    assert (await http.post("/Users", json=okta_user("x@y.z"), headers=story.auditor)).status_code == 403
    bad = await http.get("http://scim.test/audit/as-of", params={"at": "yesterday"}, headers=story.auditor)
    assert bad.status_code == 400
    assert "ISO 8601" in bad.json()["detail"]
    # Found by Schemathesis: an offset that carries the instant before year 1 in UTC was a 500.
    edge = await http.get(
        "http://scim.test/audit/as-of", params={"at": "0001-01-01T01:00:00+01:01"}, headers=story.auditor
    )
    assert edge.status_code == 400
    assert "years 1 to 9999" in edge.json()["detail"]


async def test_an_auditor_of_one_org_sees_nothing_of_another(
    http: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection:
        other = await tenancy.create_org(connection, f"other-{uuid.uuid4().hex[:6]}")
        _, token = await tenancy.issue_token(connection, other.org_id, scope="auditor")
    headers = {"Authorization": f"Bearer {token}"}
    events = (await http.get("http://scim.test/audit/history", headers=headers)).json()["events"]
    assert events == []
    snapshot = (
        await http.get("http://scim.test/audit/as-of", params={"at": story.end.isoformat()}, headers=headers)
    ).json()
    assert (snapshot["users"], snapshot["groups"]) == ([], [])


async def test_the_audit_cli_speaks_table_jsonl_and_csv(story: Story, cli_env: dict[str, str]) -> None:
    cli = str(Path(sys.executable).parent / "scimledger")
    org = story.tenant.org.name

    def run(*args: str) -> str:
        return subprocess.run(
            [cli, "audit", *args, "--org", org],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    lines = [
        json.loads(line) for line in run("history", "--user", story.bob, "--format", "jsonl").splitlines()
    ]
    assert [line["type"] for line in lines] == ["UserProvisioned", "GroupMemberAdded", "GroupMemberAdded"]
    table = run("history", "--actor", "admin:auditee")
    assert table.splitlines()[0].split()[:3] == ["position", "recorded_at", "actor"]
    assert "project renamed to 'Artemis'" in table
    as_of = json.loads(run("as-of", "--at", story.middle.isoformat()))
    assert replayed_view(as_of) == story.seen_at_middle
    csv_rows = run("as-of", "--at", story.middle.isoformat(), "--format", "csv").splitlines()
    assert csv_rows[0] == "kind,id,name,active,member,group"
    assert f"membership,{story.bob},bob@audit.example,,,Statsig-Apollo-Viewer" in csv_rows
    access = run(
        "access",
        "--from",
        story.start.isoformat(),
        "--to",
        story.end.isoformat(),
        "--user",
        "ann@audit.example",
        "--format",
        "csv",
    ).splitlines()
    assert len(access) == 2
    assert access[1].split(",")[1:5] == ["ann@audit.example", story.admin_group, "Apollo", "Admin"]


async def history_pages(
    http: httpx.AsyncClient, headers: dict[str, str], limit: int, **params: str
) -> list[list[dict[str, Any]]]:
    """Every page of /audit/history, following each answer's `next` cursor until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": str(limit), **({"after": cursor} if cursor else {})}
        response = await http.get("http://scim.test/audit/history", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["events"])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never reached the end"


async def test_history_pages_return_every_event_exactly_once_in_log_order(
    http: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    in_log_order = [
        row["position"]
        for row in await pool.fetch(
            "SELECT position FROM events WHERE org_id = $1 ORDER BY tx, position", story.tenant.org.org_id
        )
    ]
    pages = await history_pages(http, story.auditor, limit=4)
    assert all(len(page) == 4 for page in pages[:-1])
    assert len(pages) == -(-len(in_log_order) // 4)
    paged = [event for page in pages for event in page]
    assert [event["position"] for event in paged] == in_log_order
    whole = (
        await http.get("http://scim.test/audit/history", params={"limit": "1000"}, headers=story.auditor)
    ).json()
    assert whole["events"] == paged  # the same words, whichever page an event falls on
    assert whole["next"] is None
    bobs = [
        event for page in await history_pages(http, story.auditor, limit=1, user=story.bob) for event in page
    ]
    assert [event["type"] for event in bobs] == ["UserProvisioned", "GroupMemberAdded", "GroupMemberAdded"]
    assert bobs[1]["change"] == "added to group 'Statsig-Apollo-Viewer' (cause: push)"


async def test_history_refuses_a_bad_limit_or_cursor_with_a_detail(
    http: httpx.AsyncClient, story: Story
) -> None:
    for params, named in (
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1000000000"}, "limit"),
        ({"after": "not-a-cursor"}, "after"),
        ({"after": "MTIzNA"}, "after"),  # base64, but of no position
        ({"actor": "token:\x00"}, "actor"),  # U+0000: no actor can hold it, and PostgreSQL's text cannot
    ):
        response = await http.get("http://scim.test/audit/history", params=params, headers=story.auditor)
        assert response.status_code == 400, params
        assert response.json()["scimType"] == "invalidValue"
        assert f"'{named}'" in response.json()["detail"]


async def test_streamed_as_of_equals_the_replay_in_memory(
    http: httpx.AsyncClient, scim: httpx.AsyncClient, services: Services, story: Story, pool: asyncpg.Pool
) -> None:
    org_id = story.tenant.org.org_id
    # What a replay must get right besides the story: a deleted user, an archived role, a removed user.
    carl = (await scim.post("/Users", json=okta_user("carl@audit.example"))).json()["id"]
    await scim.patch(f"/Groups/{story.viewer_group}", json=members(carl))
    # Users are listed in folded order, as SCIM compares names: "aßa" folds to "assa", before "assb".
    for user_name in ("assb@audit.example", "Aßa@audit.example"):
        assert (await scim.post("/Users", json=okta_user(user_name))).status_code == 201
    assert (await scim.delete(f"/Users/{story.bob}")).status_code == 204
    await services.catalog.archive(ROLE, org_id, "Viewer", ADMIN)
    await services.users.remove_from_organization(org_id, uuid.UUID(carl), ADMIN)
    now = await db_now(pool)
    for at in (story.start, story.middle, story.end, now):
        response = await http.get(
            "http://scim.test/audit/as-of", params={"at": at.isoformat()}, headers=story.auditor
        )
        assert response.status_code == 200
        async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
            in_memory = (await audit.as_of(connection, org_id, at, "Statsig")).to_report()
        assert response.json() == {"at": at.isoformat(), **in_memory}
    assert response.json()["users"][-1]["userName"] == "carl@audit.example"
    assert response.json()["users"][-1]["member"] is False


async def test_access_review_reports_the_real_end_of_a_grant_revoked_after_the_window(
    http: httpx.AsyncClient, story: Story, cli_env: dict[str, str]
) -> None:
    # Ann lost Apollo × Admin after `middle`: a review up to `middle` must not read as "still has access".
    params = {"from": story.start.isoformat(), "to": story.middle.isoformat(), "user": story.ann}
    body = (await http.get("http://scim.test/audit/access", params=params, headers=story.auditor)).json()
    [interval] = body["intervals"]
    assert interval["to"] is not None
    assert datetime.datetime.fromisoformat(interval["to"]) > story.middle
    assert (interval["revoked_by"], interval["revoke_cause"]) == (f"token:{story.tenant.token_id}", "push")
    cli = str(Path(sys.executable).parent / "scimledger")

    def run(*args: str) -> str:
        return subprocess.run(
            [cli, "audit", "access", "--org", story.tenant.org.name, *args],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    printed = run("--from", params["from"], "--to", params["to"], "--user", story.ann, "--format", "jsonl")
    assert [json.loads(line) for line in printed.splitlines()] == [interval]


async def test_history_holds_back_what_a_transaction_in_flight_could_still_put_before_it(
    http: httpx.AsyncClient, story: Story, services: Services
) -> None:
    # The events are real ones, written as the catalog writes them (events and their rows in one transaction),
    # so that every later rebuild of this session's database still finds a whole, consistent log.
    org_id = story.tenant.org.org_id

    async def record_project(transaction: Transaction, name: str) -> int:
        recorded = await transaction.save(org_id, [Project(org_id=str(org_id), name=name)], ADMIN)
        return recorded[0].position

    async with services.store.transaction() as in_flight:
        # Takes its transaction id first, commits last: in log order it comes before `later`.
        earlier = await record_project(in_flight, f"Slow {uuid.uuid4().hex[:6]}")
        async with services.store.transaction() as quick:
            later = await record_project(quick, f"Quick {uuid.uuid4().hex[:6]}")
        shown = [event["position"] for page in await history_pages(http, story.auditor, 5) for event in page]
        # A cursor past `later` would leave `earlier` behind it for good once it commits.
        assert later not in shown
        assert earlier not in shown
    shown = [event["position"] for page in await history_pages(http, story.auditor, 5) for event in page]
    assert shown[-2:] == [earlier, later]


async def test_a_streamed_answer_or_a_refusal_gives_its_organizations_slot_back(
    story: Story, settings: Settings
) -> None:
    """A request holds one of its organization's slots (app/infrastructure/admission.py) until its response has ended, even
    one streamed after the handler returned, or one refused with an error: with one slot, each next request
    is served, never a 429."""
    one_slot = msgspec.structs.replace(settings, org_concurrency=1)
    async with (
        LifespanManager(create_app(one_slot)) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://scim.test"
        ) as client,
    ):
        for _ in range(3):
            streamed = await client.get(
                "/audit/as-of", params={"at": story.end.isoformat()}, headers=story.auditor
            )
            assert streamed.status_code == 200
            assert streamed.json()["users"]
            refused = await client.get("/audit/history", params={"limit": "0"}, headers=story.auditor)
            assert refused.status_code == 400


async def test_without_a_replica_every_audit_answer_says_it_holds_everything_acknowledged_before_it(
    http: httpx.AsyncClient, story: Story
) -> None:
    for path, params in (
        ("/audit/head", {}),
        ("/audit/history", {}),
        ("/audit/as-of", {"at": story.middle.isoformat()}),
    ):
        asked = datetime.datetime.now(datetime.UTC)
        response = await http.get(f"http://scim.test{path}", params=params, headers=story.auditor)
        assert response.status_code == 200, response.text
        assert response.headers["Data-Source"] == "primary"
        assert datetime.datetime.fromisoformat(response.headers["Data-As-Of"]) >= asked
