"""The event feed over HTTP: `GET /api/v1/orgs/{org}/events` and `GET /api/v1/events`, who may read which, the
answer's shape, paging by cursor, filters, refusals in the API's error shape, and long polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager

from app.http.app import create_app
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.event_feed import encode_cursor
from projections.public_events import AnyPublicEvent
from tests.conftest import Tenant, log_head, new_tenant, okta_user

BASE = "http://scim.test"
DEACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "value": {"active": False}}],
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(asgi_app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def admin_of(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, str]:
    async with pool.acquire() as connection:
        _, token = await tenancy.issue_token(connection, tenant.org.org_id, "admin")
    return bearer(token)


@pytest.fixture
async def platform(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as connection:
        _, token = await tenancy.issue_token(connection, None, "platform", label="feed reader")
    return bearer(token)


async def provision(client: httpx.AsyncClient, tenant: Tenant, user_name: str) -> httpx.Response:
    response = await client.post("/scim/v2/Users", json=okta_user(user_name), headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response


async def read(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"data", "next_cursor"}
    # Each event is one of the documented shapes.
    msgspec.json.decode(msgspec.json.encode(body["data"]), type=list[AnyPublicEvent])
    return body


async def readable(pool: asyncpg.Pool) -> None:
    written = await pool.fetchval("SELECT max(tx) FROM events")
    hidden = "SELECT pg_snapshot_xmin(pg_current_snapshot()) <= $1::xid8"
    while True:
        if not await pool.fetchval(hidden, written):
            return
        await asyncio.sleep(0.01)


async def read_to_end(
    client: httpx.AsyncClient, pool: asyncpg.Pool, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every event from the cursor in `params` (or the start) on, following next_cursor, once every event
    written so far is readable: a transaction of another database on the server (another checkout's tests)
    hides later commits from commit-safe readers until it ends."""
    await readable(pool)
    events: list[dict[str, Any]] = []
    page = await read(client, path, headers, **params)
    while page["data"]:
        events += page["data"]
        page = await read(client, path, headers, **{**params, "after": page["next_cursor"]})
    return events


def assert_api_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == error_type
    message: str = body["error"]["message"]
    return message


async def test_an_admin_reads_its_organizations_events_with_who_and_which_request_caused_them(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    admin = await admin_of(pool, tenant)
    created = await provision(client, tenant, "ada@feed.example")
    user_id = created.json()["id"]
    patched = await client.patch(f"/scim/v2/Users/{user_id}", json=DEACTIVATE, headers=tenant.headers)
    assert patched.status_code in (200, 204)
    events = await read_to_end(client, pool, f"/api/v1/orgs/{tenant.org.org_id}/events", admin)
    assert [(event["type"], event["data"]["user_id"]) for event in events] == [
        ("user.created", user_id),
        ("user.deactivated", user_id),
    ]
    first = events[0]
    assert first["org_id"] == str(tenant.org.org_id)
    assert first["actor"] == f"token:{tenant.token_id}"
    assert first["request_id"] == created.headers["x-request-id"]
    assert first["data"]["user_name"] == "ada@feed.example"
    assert "password" not in first["data"]["attributes"], "Okta sends a password; it is never published"
    # The organization may be named rather than given by id.
    assert await read_to_end(client, pool, f"/api/v1/orgs/{tenant.org.name}/events", admin) == events


async def test_pages_follow_the_cursor_and_a_types_filter_keeps_its_types(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    admin = await admin_of(pool, tenant)
    ids = [(await provision(client, tenant, f"p{index}@feed.example")).json()["id"] for index in range(5)]
    patched = await client.patch(f"/scim/v2/Users/{ids[3]}", json=DEACTIVATE, headers=tenant.headers)
    assert patched.status_code in (200, 204)
    path = f"/api/v1/orgs/{tenant.org.org_id}/events"
    paged = await read_to_end(client, pool, path, admin, limit=2)
    assert [(event["type"], event["data"]["user_id"]) for event in paged] == [
        *(("user.created", user_id) for user_id in ids),
        ("user.deactivated", ids[3]),
    ]
    assert len({event["id"] for event in paged}) == 6
    filtered = await read_to_end(client, pool, path, admin, types="user.deactivated, group.member_added")
    assert filtered == paged[-1:], "the same event, with the same id, whichever way it is read"


async def test_the_platform_reads_every_organizations_events_and_an_admin_only_its_own(
    client: httpx.AsyncClient, pool: asyncpg.Pool, platform: dict[str, str]
) -> None:
    async with pool.acquire() as connection:
        start = encode_cursor(await log_head(connection))
    first, second = await new_tenant(pool), await new_tenant(pool)
    one = (await provision(client, first, "one@feed.example")).json()["id"]
    two = (await provision(client, second, "two@feed.example")).json()["id"]
    everything = await read_to_end(client, pool, "/api/v1/events", platform, after=start)
    seen = [(event["org_id"], event["data"]["user_id"]) for event in everything]
    assert seen == [(str(first.org.org_id), one), (str(second.org.org_id), two)]
    # A platform token reads one organization's feed too.
    org_feed = await read_to_end(client, pool, f"/api/v1/orgs/{second.org.org_id}/events", platform)
    assert [event["data"]["user_id"] for event in org_feed] == [two]

    admin = await admin_of(pool, first)
    refused = await client.get("/api/v1/events", headers=admin)
    assert "'admin' scope" in assert_api_error(refused, 403, "forbidden")
    # Another organization's feed is answered as one that does not exist.
    hidden = await client.get(f"/api/v1/orgs/{second.org.org_id}/events", headers=admin)
    assert_api_error(hidden, 404, "not_found")
    assert str(two) not in hidden.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "bm90IGEgY3Vyc29y"}, "not one this feed handed out"),
        ({"limit": "many"}, "limit must be a whole number"),
        ({"limit": "0"}, "limit must be between 1 and 1000"),
        ({"limit": "1001"}, "limit must be between 1 and 1000"),
        ({"wait": "soon"}, "wait must be a number of seconds"),
        ({"wait": "nan"}, "wait must be a number of seconds"),
        ({"wait": "31"}, "wait must be between 0 and 30 seconds"),
        ({"types": "user.created,user.exploded"}, "Unknown event type user.exploded"),
    ],
)
async def test_a_request_the_feed_cannot_answer_is_refused_in_the_api_error_shape(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    platform: dict[str, str],
    params: dict[str, str],
    message: str,
) -> None:
    admin = await admin_of(pool, tenant)
    for path, headers in (("/api/v1/events", platform), (f"/api/v1/orgs/{tenant.org.org_id}/events", admin)):
        response = await client.get(path, params=params, headers=headers)
        assert message in assert_api_error(response, 400, "invalid_request")


async def test_a_long_poll_answers_as_soon_as_an_event_arrives(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    admin = await admin_of(pool, tenant)
    path = f"/api/v1/orgs/{tenant.org.org_id}/events"
    empty = await read(client, path, admin)
    assert empty["data"] == []
    waiting = asyncio.create_task(read(client, path, admin, after=empty["next_cursor"], wait=25))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    started = time.monotonic()
    user_id = (await provision(client, tenant, "late@feed.example")).json()["id"]
    page = await asyncio.wait_for(waiting, timeout=25)
    assert time.monotonic() - started < 10
    assert [event["data"]["user_id"] for event in page["data"]] == [user_id]


async def test_a_long_poll_leaves_its_organizations_slot_to_the_identity_provider(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """With one request in progress allowed per organization, the host app's long poll must not make Okta's
    requests wait: it holds no database work while it waits."""
    one_at_a_time = msgspec.structs.replace(settings, org_concurrency=1, token_concurrency=1)
    tenant = await new_tenant(pool)
    admin = await admin_of(pool, tenant)
    async with LifespanManager(create_app(one_at_a_time)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            path = f"/api/v1/orgs/{tenant.org.org_id}/events"
            waiting = asyncio.create_task(client.get(path, params={"wait": 3}, headers=admin))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            okta = await client.get("/scim/v2/Users", headers=tenant.headers)
            assert okta.status_code == 200, okta.text
            response = await waiting
            assert response.status_code == 200, response.text
            assert response.json()["data"] == []
