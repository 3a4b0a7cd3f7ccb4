"""The management API's edge, over the ASGI app: which tokens reach it and which organizations they reach, its
one error shape, cursor pagination, Idempotency-Key, and tokens recording their last use."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import Receive, Scope, Send

from app.http.app import create_app
from app.http.middleware import EdgeMiddleware
from app.http.operations import Metrics
from app.infrastructure.settings import Settings
from app.services import tenancy
from tests.conftest import Tenant, new_tenant

API = "http://scim.test/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Managed:
    """An organization with a token of each of its scopes."""

    tenant: Tenant
    admin: dict[str, str]
    auditor: dict[str, str]

    @property
    def org_id(self) -> str:
        return str(self.tenant.org.org_id)


async def managed(pool: asyncpg.Pool) -> Managed:
    tenant = await new_tenant(pool)
    async with pool.acquire() as connection:
        _, admin = await tenancy.issue_token(connection, tenant.org.org_id, "admin")
        _, auditor = await tenancy.issue_token(connection, tenant.org.org_id, "auditor")
    return Managed(tenant, bearer(admin), bearer(auditor))


@pytest.fixture
async def api(asgi_app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=API) as client:
        yield client


@pytest.fixture
async def platform(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as connection:
        _, token = await tenancy.issue_token(connection, None, "platform", label="host app")
    return bearer(token)


def assert_api_error(response: httpx.Response, status: int, error_type: str) -> str:
    """The response is the API's error shape with `status` and `type`; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "request_id"}
    assert body["error"]["type"] == error_type
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    message: str = body["error"]["message"]
    assert message
    return message


async def test_admin_and_platform_tokens_reach_the_api_and_other_scopes_are_refused_naming_theirs(
    api: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    org = await managed(pool)
    path = f"/orgs/{org.org_id}"
    for headers in (org.admin, platform):
        shown = await api.get(path, headers=headers)
        assert shown.status_code == 200
        assert shown.json() == {"id": org.org_id, "name": org.tenant.org.name}
    for headers, scope in ((org.tenant.headers, "scim"), (org.auditor, "auditor")):
        message = assert_api_error(await api.get(path, headers=headers), 403, "forbidden")
        assert f"'{scope}' scope" in message
        assert "'admin' or 'platform'" in message
    anonymous = await api.get(path)
    assert_api_error(anonymous, 401, "unauthenticated")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert_api_error(await api.get(path, headers=bearer("scl_made-up")), 401, "unauthenticated")
    # Creating organizations is the platform's alone.
    refused = await api.post("/orgs", json={"name": f"by-admin-{uuid.uuid4().hex[:6]}"}, headers=org.admin)
    assert "'platform'" in assert_api_error(refused, 403, "forbidden")


@pytest.mark.parametrize(
    "path", ["/scim/v2/Users", "/scim/v2/Groups", "/scim/v2/Schemas", "/audit/head", "/audit/history"]
)
async def test_a_platform_token_is_refused_by_scim_and_audit_routes_naming_its_scope(
    api: httpx.AsyncClient, platform: dict[str, str], path: str
) -> None:
    refused = await api.get(f"http://scim.test{path}", headers=platform)
    assert refused.status_code == 403
    body = refused.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"], "SCIM keeps SCIM's errors"
    assert "'platform' scope" in body["detail"]


async def test_an_admin_token_is_refused_by_scim_routes(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    org = await managed(pool)
    refused = await api.get("http://scim.test/scim/v2/Users", headers=org.admin)
    assert refused.status_code == 403
    assert "'admin' scope" in refused.json()["detail"]


async def test_another_organization_is_not_found_never_forbidden(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    mine, theirs = await managed(pool), await managed(pool)
    nowhere = str(uuid.uuid4())
    for reference in (theirs.org_id, theirs.tenant.org.name, nowhere):
        for request in (
            api.get(f"/orgs/{reference}", headers=mine.admin),
            api.get(f"/orgs/{reference}/tokens", headers=mine.admin),
            api.post(f"/orgs/{reference}/tokens", json={"scope": "auditor"}, headers=mine.admin),
        ):
            message = assert_api_error(await request, 404, "not_found")
            assert message == f"No organization '{reference}'."
    # Its own organization, by name too.
    assert (await api.get(f"/orgs/{mine.tenant.org.name}", headers=mine.admin)).json()["id"] == mine.org_id


async def test_every_api_error_has_the_one_shape_and_scim_keeps_its_own(
    api: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    org = await managed(pool)
    assert_api_error(await api.get("/no-such-thing", headers=org.admin), 404, "not_found")
    assert_api_error(await api.put(f"/orgs/{org.org_id}", headers=org.admin), 405, "method_not_allowed")
    assert_api_error(await api.post("/orgs", content=b"{", headers=platform), 400, "invalid_request")
    assert_api_error(await api.post("/orgs", content=b"", headers=platform), 400, "invalid_request")
    assert_api_error(await api.post("/orgs", json={"name": 7}, headers=platform), 422, "unprocessable")
    assert_api_error(await api.post("/orgs", json={"nom": "x"}, headers=platform), 422, "unprocessable")
    # A domain refusal through DOMAIN_ERROR_ANSWERS: an organization name already taken.
    taken = await api.post("/orgs", json={"name": org.tenant.org.name}, headers=platform)
    assert "already exists" in assert_api_error(taken, 409, "conflict")
    named = await api.get("/no-such-thing", headers={**org.admin, "X-Request-Id": "req-from-the-host-app"})
    assert named.json()["error"]["request_id"] == "req-from-the-host-app"
    scim = await api.get("http://scim.test/scim/v2/Nope", headers=org.tenant.headers)
    assert scim.status_code == 404
    assert scim.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_a_platform_token_creates_an_organization_that_then_exists_for_the_cli_too(
    api: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    name = f"Created {uuid.uuid4().hex[:8]}"
    created = await api.post("/orgs", json={"name": name}, headers=platform)
    assert created.status_code == 201
    org_id = created.json()["id"]
    assert created.json() == {"id": org_id, "name": name}
    async with pool.acquire() as connection:
        assert (await tenancy.find_org(connection, name)).org_id == uuid.UUID(org_id)
    assert (await api.get(f"/orgs/{org_id}", headers=platform)).json()["name"] == name


async def test_a_list_pages_with_an_opaque_cursor_and_refuses_a_tampered_one(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    async with pool.acquire() as connection:
        for _ in range(5):
            await tenancy.issue_token(connection, org.tenant.org.org_id, "auditor")
        expected = [
            str(info.token_id) for info in await tenancy.list_tokens(connection, org.tenant.org.org_id)
        ]
    assert len(expected) == 8  # the scim, admin and auditor tokens of `managed`, and five more
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        listed = await api.get(f"/orgs/{org.org_id}/tokens", params=params, headers=org.admin)
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert set(body) == {"data", "next_cursor"}
        assert len(body["data"]) <= 3
        seen += [token["id"] for token in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (expected, 3)
    everything = await api.get(f"/orgs/{org.org_id}/tokens", headers=org.admin)
    assert [token["id"] for token in everything.json()["data"]] == expected, "50 a page by default"
    assert everything.json()["next_cursor"] is None

    first = await api.get(f"/orgs/{org.org_id}/tokens", params={"limit": "2"}, headers=org.admin)
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    decoded["key"]["created_at"] = "not a time"
    altered = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    decoded["key"], decoded["listing"] = json.loads(json.dumps(decoded["key"])), "users"
    other_listing = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    for tampered in (cursor[:-3], cursor + "x", "%%%", altered, other_listing, "e30"):
        refused = await api.get(f"/orgs/{org.org_id}/tokens", params={"cursor": tampered}, headers=org.admin)
        assert "cursor" in assert_api_error(refused, 400, "invalid_request")
    for limit in ("0", "101", "-1", "ten", "1.5"):
        refused = await api.get(f"/orgs/{org.org_id}/tokens", params={"limit": limit}, headers=org.admin)
        assert "limit" in assert_api_error(refused, 400, "invalid_request")


async def test_an_idempotency_key_replays_the_first_response_and_refuses_another_body(
    api: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    name = f"Once {uuid.uuid4().hex[:8]}"
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = await api.post("/orgs", json={"name": name}, headers={**platform, **key})
    again = await api.post("/orgs", json={"name": name}, headers={**platform, **key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await pool.fetchval("SELECT count(*) FROM orgs WHERE name = $1", name) == 1
    other = await api.post("/orgs", json={"name": name + " bis"}, headers={**platform, **key})
    assert "different request" in assert_api_error(other, 422, "unprocessable")
    # Without the key, the same request is a new one (and this one is refused: the name is taken).
    assert (await api.post("/orgs", json={"name": name}, headers=platform)).status_code == 409
    # A key is the token's own: another token's same key is another request.
    async with pool.acquire() as connection:
        _, second_platform = await tenancy.issue_token(connection, None, "platform")
    theirs = await api.post("/orgs", json={"name": name + " ter"}, headers={**bearer(second_platform), **key})
    assert theirs.status_code == 201


async def test_a_failed_request_releases_its_key_and_a_key_expires_after_a_day(
    api: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    org = await managed(pool)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    taken = await api.post("/orgs", json={"name": org.tenant.org.name}, headers={**platform, **key})
    assert taken.status_code == 409
    name = f"Retried {uuid.uuid4().hex[:8]}"
    # The failure was not recorded, so the key is free again, even for another body.
    assert (await api.post("/orgs", json={"name": name}, headers={**platform, **key})).status_code == 201
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' WHERE key = $1",
        key["Idempotency-Key"],
    )
    later = await api.post("/orgs", json={"name": name + " later"}, headers={**platform, **key})
    assert later.status_code == 201
    assert "idempotent-replayed" not in later.headers


async def test_concurrent_requests_with_one_key_do_the_work_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    name = f"Raced {uuid.uuid4().hex[:8]}"
    key = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    answers = await asyncio.gather(
        *(api.post("/orgs", json={"name": name}, headers={**platform, **key}) for _ in range(8))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    for answer in answers:
        if answer.status_code == 409:
            assert "still in progress" in answer.json()["error"]["message"]
    assert len({answer.json()["id"] for answer in answers if answer.status_code == 201}) == 1
    assert await pool.fetchval("SELECT count(*) FROM orgs WHERE name = $1", name) == 1


async def test_tokens_are_issued_listed_with_their_last_use_and_revoked_through_the_api(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org, other = await managed(pool), await managed(pool)
    tokens = f"/orgs/{org.org_id}/tokens"

    async def listed() -> dict[str, dict[str, Any]]:
        return {token["id"]: token for token in (await api.get(tokens, headers=org.admin)).json()["data"]}

    issued = await api.post(tokens, json={"scope": "scim", "label": "okta-next"}, headers=org.admin)
    assert issued.status_code == 201
    new = issued.json()
    assert (new["scope"], new["label"]) == ("scim", "okta-next")
    assert new["token"].startswith(tenancy.TOKEN_PREFIX)
    before = (await listed())[new["id"]]
    assert before["last_used_at"] is None
    assert before["state"] == "active"
    assert "token" not in before, "a secret is shown once"
    assert (await api.get("http://scim.test/scim/v2/Users", headers=bearer(new["token"]))).status_code == 200
    assert (await listed())[new["id"]]["last_used_at"] is not None, "its use is recorded"

    third = await api.post(tokens, json={"scope": "scim"}, headers=org.admin)
    assert "Revoke one first" in assert_api_error(third, 409, "conflict")
    # Another organization's admin can neither see nor revoke it.
    stranger = await api.delete(f"/orgs/{other.org_id}/tokens/{new['id']}", headers=other.admin)
    assert_api_error(stranger, 404, "not_found")
    assert_api_error(await api.delete(f"{tokens}/{new['id']}", headers=other.admin), 404, "not_found")
    assert_api_error(await api.delete(f"{tokens}/not-an-id", headers=org.admin), 404, "not_found")

    assert (await api.delete(f"{tokens}/{new['id']}", headers=org.admin)).status_code == 204
    assert (await listed())[new["id"]]["state"] == "revoked"
    revoked = await api.get("http://scim.test/scim/v2/Users", headers=bearer(new["token"]))
    assert revoked.status_code == 401
    # Its place is free again: Okta's token rotates without downtime.
    assert (await api.post(tokens, json={"scope": "scim"}, headers=org.admin)).status_code == 201
    assert_api_error(
        await api.post(tokens, json={"scope": "platform"}, headers=org.admin), 422, "unprocessable"
    )


async def test_a_body_over_the_limit_is_a_413_in_the_api_shape(
    api: httpx.AsyncClient, platform: dict[str, str]
) -> None:
    too_large = await api.post("/orgs", json={"name": "x" * 70_000}, headers=platform)
    assert "limit" in assert_api_error(too_large, 413, "body_too_large")


async def test_a_token_over_its_rate_limit_gets_a_429_in_the_api_shape(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    limited = msgspec.structs.replace(settings, rate_limit_per_second=0.01, rate_limit_burst=1)
    async with LifespanManager(create_app(limited)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=API) as client:
            assert (await client.get(f"/orgs/{org.org_id}", headers=org.admin)).status_code == 200
            refused = await client.get(f"/orgs/{org.org_id}", headers=org.admin)
    assert "rate limit" in assert_api_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1


async def test_an_unhandled_failure_under_api_is_a_500_in_the_api_shape() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    edge = EdgeMiddleware(failing, Metrics(), {})
    transport = httpx.ASGITransport(app=edge, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://scim.test") as client:
        api_failure = await client.get("/api/v1/orgs")
        scim_failure = await client.get("/scim/v2/Users")
        console_failure = await client.get("/console/users")
    assert "boom" not in assert_api_error(api_failure, 500, "internal_error")
    assert scim_failure.status_code == 500
    assert scim_failure.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert console_failure.status_code == 500
    assert console_failure.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in console_failure.text
    assert "boom" not in console_failure.text
