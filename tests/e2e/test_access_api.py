"""`GET /api/v1/orgs/{org}/access` over the ASGI app: Okta grants over SCIM, the host app asks over the API."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import Metadata
from tests.conftest import Tenant, new_tenant, okta_user
from tests.e2e.test_api_foundation import assert_api_error, bearer

API = "http://scim.test/api/v1"
SCIM = "http://scim.test/scim/v2"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ADMIN = Metadata("admin:test")


@dataclass
class Granted:
    """An organization where Okta granted one user Apollo × Admin by a PATCH, and the host app's token."""

    tenant: Tenant
    admin: dict[str, str]
    user_id: str
    user_name: str
    project_id: uuid.UUID
    role_id: uuid.UUID
    group_id: str
    granting_request: str  # the X-Request-Id of the PATCH that granted it

    @property
    def path(self) -> str:
        return f"/orgs/{self.tenant.org.org_id}/access"

    @property
    def ids(self) -> dict[str, str]:
        return {"user": self.user_id, "project": str(self.project_id), "role": str(self.role_id)}


@pytest.fixture
async def api(asgi_app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=API) as client:
        yield client


@pytest.fixture
async def granted(api: httpx.AsyncClient, services: Services, pool: asyncpg.Pool) -> Granted:
    tenant = await new_tenant(pool)
    org_id = tenant.org.org_id
    async with pool.acquire() as connection:
        _, admin = await tenancy.issue_token(connection, org_id, "admin")
    project_id, _ = await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    role_id, _ = await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    user_name = f"{uuid.uuid4().hex[:8]}@acme.example"
    scim = {"Authorization": f"Bearer {tenant.token}"}
    user = (await api.post(f"{SCIM}/Users", json=okta_user(user_name), headers=scim)).json()
    group = (await api.get(f"{SCIM}/Groups", headers=scim)).json()["Resources"][0]
    add = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
    }
    response = await api.patch(f"{SCIM}/Groups/{group['id']}", json=add, headers=scim)
    assert response.status_code == 204
    return Granted(
        tenant,
        bearer(admin),
        user["id"],
        user_name,
        project_id,
        role_id,
        group["id"],
        response.headers["x-request-id"],
    )


async def ask(api: httpx.AsyncClient, granted: Granted, **params: str) -> dict[str, Any]:
    response = await api.get(granted.path, params=params, headers=granted.admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


async def test_okta_s_grant_is_allowed_since_its_push_by_its_token_and_request(
    api: httpx.AsyncClient, granted: Granted, pool: asyncpg.Pool
) -> None:
    body = await ask(api, granted, **granted.ids)
    granted_at = await pool.fetchval(
        "SELECT recorded_at FROM events WHERE stream_id = $1 AND type = 'GroupMemberAdded'",
        uuid.UUID(granted.user_id),
    )
    assert body == {
        "allowed": True,
        "user_id": granted.user_id,
        "project_id": str(granted.project_id),
        "role_id": str(granted.role_id),
        "at": None,
        "since": granted_at.isoformat().replace("+00:00", "Z"),
        "granted_by": f"token:{granted.tenant.token_id}",
        "request_id": granted.granting_request,
        "cause": "push",
        "reason": None,
    }
    # Names answer the same, folded as SCIM folds them.
    by_names = await ask(api, granted, user=granted.user_name.upper(), project="apollo", role="ADMIN")
    assert by_names == body


async def test_an_unlink_revokes_and_the_past_is_still_answered_by_at(
    api: httpx.AsyncClient, granted: Granted
) -> None:
    before = await ask(api, granted, **granted.ids)
    scim = {"Authorization": f"Bearer {granted.tenant.token}"}
    assert (await api.delete(f"{SCIM}/Groups/{granted.group_id}", headers=scim)).status_code == 204
    now = await ask(api, granted, **granted.ids)
    assert now["allowed"] is False
    assert now["since"] is None
    assert now["granted_by"] is None
    then = await ask(api, granted, **granted.ids, at=before["since"])
    assert then["allowed"] is True
    assert then["since"] == before["since"]
    assert then["at"] == before["since"]
    since = datetime.datetime.fromisoformat(before["since"])
    earlier = (since - datetime.timedelta(microseconds=1)).isoformat()
    assert (await ask(api, granted, **granted.ids, at=earlier))["allowed"] is False


async def test_refusals_are_in_the_api_s_error_shape(api: httpx.AsyncClient, granted: Granted) -> None:
    missing = await api.get(granted.path, params={"user": granted.user_id}, headers=granted.admin)
    assert "'project' parameter is required" in assert_api_error(missing, 400, "invalid_request")
    bad_at = await api.get(granted.path, params={**granted.ids, "at": "yesterday"}, headers=granted.admin)
    assert "ISO 8601" in assert_api_error(bad_at, 400, "invalid_request")
    nul = await api.get(granted.path, params={**granted.ids, "user": "a\x00b"}, headers=granted.admin)
    assert "NUL" in assert_api_error(nul, 400, "invalid_request")
    unknown = await api.get(granted.path, params={**granted.ids, "project": "Hermes"}, headers=granted.admin)
    assert "Hermes" in assert_api_error(unknown, 404, "not_found")
    # An id is read without a look at whether it names anything: not allowed, and no error.
    stranger = await ask(api, granted, **{**granted.ids, "user": str(uuid.uuid4())})
    assert stranger["allowed"] is False


async def test_only_the_org_s_admin_and_platform_tokens_may_ask(
    api: httpx.AsyncClient, granted: Granted, pool: asyncpg.Pool
) -> None:
    other = await new_tenant(pool)
    async with pool.acquire() as connection:
        _, others_admin = await tenancy.issue_token(connection, other.org.org_id, "admin")
        _, platform = await tenancy.issue_token(connection, None, "platform")
    theirs = await api.get(granted.path, params=granted.ids, headers=bearer(others_admin))
    assert_api_error(theirs, 404, "not_found")
    assert granted.user_id not in theirs.text.replace(str(theirs.request.url), "")
    scim = await api.get(granted.path, params=granted.ids, headers=bearer(granted.tenant.token))
    assert "scope" in assert_api_error(scim, 403, "forbidden")
    by_platform = await api.get(
        f"/orgs/{granted.tenant.org.org_id}/access", params=granted.ids, headers=bearer(platform)
    )
    assert by_platform.json()["allowed"] is True
    # The other organization's own path, asked about this one's ids, finds no grant of theirs.
    sideways = await api.get(
        f"/orgs/{other.org.org_id}/access", params=granted.ids, headers=bearer(others_admin)
    )
    assert sideways.json()["allowed"] is False
