"""`/api/v1/orgs/{org}/webhooks` end to end: an org admin creates an endpoint (its secret shown once), a
receiver on loopback gets the organization's events signed with it, and the admin pauses, resumes, rotates,
reads the delivery log page by page, replays and deletes; another organization reaches none of it."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from app.services import tenancy
from tests.conftest import Tenant, new_tenant, okta_user
from tests.integration.webhook_fixtures import dispatching, eventually, no_webhook_left_active, receiver
from tests.webhook_receiver import Receiver

__all__ = ["no_webhook_left_active", "receiver"]  # fixtures

API = "http://scim.test/api/v1/orgs"
pytestmark = pytest.mark.usefixtures("no_webhook_left_active")


async def admin_of(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, str]:
    async with pool.acquire() as connection:
        _, token = await tenancy.issue_token(connection, tenant.org.org_id, scope="admin")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, str]:
    return await admin_of(pool, tenant)


async def test_an_admin_manages_a_webhook_and_its_receiver_gets_the_events_signed(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    database_url: str,
    tenant: Tenant,
    admin: dict[str, str],
    receiver: Receiver,
) -> None:
    hooks = f"{API}/{tenant.org.org_id}/webhooks"
    created = await http.post(
        hooks, json={"url": receiver.url("/api"), "description": "app backend"}, headers=admin
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    webhook = created.json()["webhook"]
    assert secret.startswith("whsec_")
    assert (webhook["state"], webhook["description"], webhook["event_types"]) == ("active", "app backend", [])
    one = f"{hooks}/{webhook['id']}"
    listed = (await http.get(hooks, headers=admin)).json()
    assert [item["id"] for item in listed["data"]] == [webhook["id"]]
    assert secret not in str(listed)
    assert secret not in (await http.get(one, headers=admin)).text
    patched = await http.patch(one, json={"description": "renamed"}, headers=admin)
    assert (patched.status_code, patched.json()["description"]) == (200, "renamed")
    assert patched.json()["url"] == receiver.url("/api")

    async with dispatching(pool, database_url):
        user = await http.post(
            "/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@acme.com"), headers=tenant.headers
        )
        assert user.status_code == 201
        await eventually(lambda: len(receiver.first_receipts("/api")) == 1, what="the user's event")
        [first] = receiver.received("/api")
        Webhook(secret).verify(first.body, first.headers)

        assert (await http.post(f"{one}/pause", headers=admin)).json()["state"] == "paused"
        await http.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@acme.com"), headers=tenant.headers)
        rotated = await http.post(f"{one}/rotate", headers=admin)
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != secret
        assert receiver.first_receipts("/api") == [first.webhook_id]  # paused: nothing more
        assert (await http.post(f"{one}/resume", headers=admin)).json()["state"] == "active"
        await eventually(lambda: len(receiver.first_receipts("/api")) == 2, what="delivered on resume")
        second = receiver.received("/api")[-1]
        Webhook(new_secret).verify(second.body, second.headers)
        Webhook(secret).verify(second.body, second.headers)  # the previous secret signs for 24 hours

        replayed = await http.post(f"{one}/replay", json={"from_webhook_id": first.webhook_id}, headers=admin)
        assert replayed.status_code == 200, replayed.text
        await eventually(lambda: len(receiver.received("/api")) == 4, what="both delivered again")
        assert [receipt.webhook_id for receipt in receiver.received("/api")[2:]] == receiver.first_receipts(
            "/api"
        )

        # From a cursor of the feed: its first page's cursor is past the first event, so the second comes again.
        feed = await http.get(f"{API}/{tenant.org.org_id}/events", params={"limit": "1"}, headers=admin)
        assert feed.json()["data"][0]["id"] == first.webhook_id
        after = {"after": feed.json()["next_cursor"]}
        assert (await http.post(f"{one}/replay", json=after, headers=admin)).status_code == 200
        await eventually(lambda: len(receiver.received("/api")) == 5, what="the second delivered again")
        assert receiver.received("/api")[-1].webhook_id == receiver.first_receipts("/api")[1]
        for neither_or_both in ({}, {"after": None, "from_webhook_id": first.webhook_id}):
            refused = await http.post(f"{one}/replay", json=neither_or_both, headers=admin)
            assert refused.status_code == 400, refused.text
        tampered = await http.post(f"{one}/replay", json={"after": "not-a-cursor"}, headers=admin)
        assert tampered.status_code == 400
        assert "cursor" in tampered.json()["error"]["message"]

    page = (await http.get(f"{one}/deliveries", params={"limit": "3"}, headers=admin)).json()
    rest = (await http.get(f"{one}/deliveries", params={"cursor": page["next_cursor"]}, headers=admin)).json()
    attempts = page["data"] + rest["data"]
    assert [attempt["webhook_id"] for attempt in reversed(attempts)] == [
        receipt.webhook_id for receipt in receiver.received("/api")
    ]
    assert all(attempt["succeeded"] and attempt["status"] == 200 for attempt in attempts)
    assert rest["next_cursor"] is None

    assert (await http.delete(one, headers=admin)).status_code == 204
    gone = await http.get(one, headers=admin)
    assert (gone.status_code, gone.json()["error"]["type"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"url": "ftp://hooks.example.com/in"}, 400, "https"),
        ({"url": "https://user:pw@hooks.example.com/in"}, 400, "password"),
        ({"url": "https://hooks.example.com/in", "event_types": ["user created"]}, 400, "not an event type"),
        ({"url": "https://hooks.example.com/in", "secret": "mine"}, 422, "secret"),
        ({"event_types": []}, 422, "url"),
    ],
)
async def test_a_webhook_that_cannot_work_is_refused_saying_why(
    http: httpx.AsyncClient,
    tenant: Tenant,
    admin: dict[str, str],
    body: dict[str, object],
    status: int,
    says: str,
) -> None:
    response = await http.post(f"{API}/{tenant.org.org_id}/webhooks", json=body, headers=admin)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
    assert (await http.get(f"{API}/{tenant.org.org_id}/webhooks", headers=admin)).json()["data"] == []


async def test_no_webhook_route_reaches_another_organization(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, admin: dict[str, str]
) -> None:
    hooks = f"{API}/{tenant.org.org_id}/webhooks"
    webhook = (await http.post(hooks, json={"url": "https://hooks.example.com/in"}, headers=admin)).json()[
        "webhook"
    ]
    one = f"{hooks}/{webhook['id']}"
    other = await new_tenant(pool)
    stranger = await admin_of(pool, other)
    probes = [
        ("GET", hooks, None),
        ("POST", hooks, {"url": "https://hooks.example.com/theirs"}),
        ("GET", one, None),
        ("PATCH", one, {"description": "theirs"}),
        ("POST", f"{one}/rotate", None),
        ("POST", f"{one}/pause", None),
        ("POST", f"{one}/resume", None),
        ("POST", f"{one}/replay", {"from_webhook_id": "evt_1"}),
        ("GET", f"{one}/deliveries", None),
        ("DELETE", one, None),
    ]
    for method, url, body in probes:
        response = await http.request(method, url, json=body, headers=stranger)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["type"] == "not_found"
        assert webhook["id"] not in response.text
    # Its own organization's path with the other's webhook id: not found either.
    theirs = f"{API}/{other.org.org_id}/webhooks/{webhook['id']}"
    assert (await http.get(theirs, headers=stranger)).status_code == 404
    mine = (await http.get(one, headers=admin)).json()
    assert (mine["state"], mine["description"]) == ("active", "")
    assert [item["id"] for item in (await http.get(hooks, headers=admin)).json()["data"]] == [webhook["id"]]
