"""PATCH `remove` of `active` (RFC 7644 §3.5.2.2): the attribute becomes unassigned, which counts as not
active. The user is deactivated with the same consequences as `active: false`, and the resource shows no
`active` until a client sets it again."""

import uuid
from typing import Any

import asyncpg
import httpx

from app.services import tenancy
from eventstore.runner import Runner
from tests.conftest import Tenant, okta_user
from tests.e2e.test_reactors import user_events, within

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
REMOVE_ACTIVE = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "active"}]}


def set_active(value: bool) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": value}}]}


async def create(scim: httpx.AsyncClient) -> dict[str, Any]:
    response = await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@example.com"))
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def deactivations(pool: asyncpg.Pool, user_id: str) -> list[Any]:
    rows = await pool.fetch(
        "SELECT payload, schema_version FROM events WHERE stream_id = $1 AND type = 'UserDeactivated' "
        "ORDER BY version",
        uuid.UUID(user_id),
    )
    return [(row["payload"], row["schema_version"]) for row in rows]


async def test_removing_active_deactivates_and_the_resource_shows_no_active(
    scim: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await create(scim)
    response = await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)
    assert response.status_code == 200, response.text
    assert "active" not in response.json()
    assert "active" not in (await scim.get(f"/Users/{user['id']}")).json()
    assert await deactivations(pool, user["id"]) == [({"unassigned": True}, 2)]
    # Not active, for filters too.
    inactive = await scim.get(
        "/Users", params={"filter": f'userName eq "{user["userName"]}" and active eq false'}
    )
    assert inactive.json()["totalResults"] == 1
    for filter_text, found in (("active pr", 0), ("not (active pr)", 1), ("active eq true", 0)):
        listed = await scim.get(
            "/Users", params={"filter": f'userName eq "{user["userName"]}" and {filter_text}'}
        )
        assert listed.json()["totalResults"] == found, filter_text
    # Removing it again records nothing more.
    assert (await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)).status_code == 200
    assert len(await deactivations(pool, user["id"])) == 1


async def test_removing_active_of_an_inactive_user_still_records_that_it_became_unassigned(
    scim: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    user = await create(scim)
    assert (await scim.patch(f"/Users/{user['id']}", json=set_active(False))).json()["active"] is False
    assert "active" not in (await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)).json()
    assert await deactivations(pool, user["id"]) == [({"unassigned": False}, 2), ({"unassigned": True}, 2)]
    async with pool.acquire() as connection:
        _, auditor = await tenancy.issue_token(connection, tenant.org.org_id, scope="auditor")
    history = await scim.get(
        "http://scim.test/audit/history",
        params={"user": user["id"]},
        headers={"Authorization": f"Bearer {auditor}"},
    )
    assert [event["change"] for event in history.json()["events"]][-2:] == [
        "deactivated",
        "deactivated: 'active' was removed, and is unassigned",
    ]


async def test_a_client_assigns_active_again_with_false_or_true(
    scim: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await create(scim)
    await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)
    assigned = await scim.patch(f"/Users/{user['id']}", json=set_active(False))
    assert assigned.json()["active"] is False
    assert await deactivations(pool, user["id"]) == [({"unassigned": True}, 2), ({"unassigned": False}, 2)]
    await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)
    reactivated = await scim.patch(f"/Users/{user['id']}", json=set_active(True))
    assert reactivated.json()["active"] is True
    # Okta's profile push (a PUT carrying active) assigns it too.
    await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)
    pushed = await scim.put(f"/Users/{user['id']}", json=okta_user(user["userName"]))
    assert pushed.json()["active"] is True


async def test_removing_active_removes_the_user_from_the_organization_as_a_deactivation_does(
    scim: httpx.AsyncClient, pool: asyncpg.Pool, runner: Runner
) -> None:
    user = await create(scim)
    assert (await scim.patch(f"/Users/{user['id']}", json=REMOVE_ACTIVE)).status_code == 200

    async def removed() -> bool:
        return ("UserRemovedFromOrganization", "okta_deactivation", "reactor") in await user_events(
            pool, user["id"]
        )

    await within(10.0, removed)
    assert "active" not in (await scim.get(f"/Users/{user['id']}")).json()
