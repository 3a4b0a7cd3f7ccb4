"""The integration's promises, kept by reactors, over HTTP with the runner running.

- Deactivated or deleted in Okta → removed from the organization and from every group.
- Removed in the app → access revoked and shown inactive, so Okta unassigns.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import EVENT_COLUMNS, Metadata, RecordedEvent
from eventstore.runner import Runner
from reactors.membership import DeactivationRemovesFromOrganization
from tests.conftest import Tenant, okta_user
from tests.service import run_cli

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ADMIN = Metadata("admin:test")
PROMISED_WITHIN = 1.0  # seconds, at rest


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"not true within {seconds} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def setup(scim: httpx.AsyncClient, services: Services, tenant: Tenant) -> tuple[str, list[str]]:
    org_id = tenant.org.org_id
    await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    await services.catalog.create(ROLE, org_id, "Viewer", ADMIN)
    user = (await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:6]}@acme.com"))).json()["id"]
    groups = [group["id"] for group in (await scim.get("/Groups")).json()["Resources"]]
    for group_id in groups:
        response = await scim.patch(
            f"/Groups/{group_id}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}],
            },
        )
        assert response.status_code == 204
    return user, groups


def active(value: bool) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": value}}]}


async def user_events(pool: asyncpg.Pool, user_id: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT type, coalesce(payload->>'cause', ''), actor FROM events WHERE stream_id = $1 ORDER BY version",
        uuid.UUID(user_id),
    )
    return [(row[0], row[1], row[2].split(":")[0]) for row in rows]


async def test_an_okta_deactivation_removes_the_user_from_the_org_and_every_group_within_a_second(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool, runner: Runner
) -> None:
    user, groups = await setup(scim, services, tenant)
    assert (await scim.patch(f"/Users/{user}", json=active(False))).status_code == 200

    async def out_of_every_group() -> bool:
        members = [(await scim.get(f"/Groups/{group}")).json().get("members", []) for group in groups]
        return not any(members)

    await within(PROMISED_WITHIN, out_of_every_group)
    fetched = (await scim.get(f"/Users/{user}")).json()
    assert fetched["active"] is False
    assert "groups" not in fetched
    history = await user_events(pool, user)
    assert history[-3:] == [
        ("UserRemovedFromOrganization", "okta_deactivation", "reactor"),
        ("GroupMemberRemoved", "reactor", "reactor"),
        ("GroupMemberRemoved", "reactor", "reactor"),
    ]

    # Reactivated in Okta: a member again, but without the groups, which Okta pushes again itself.
    assert (await scim.patch(f"/Users/{user}", json=active(True))).status_code == 200
    assert (await user_events(pool, user))[-2:] == [
        ("UserReactivated", "", "token"),
        ("UserJoinedOrganization", "okta_reactivation", "token"),
    ]
    assert "groups" not in (await scim.get(f"/Users/{user}")).json()


async def test_an_okta_delete_removes_the_user_from_the_org_and_every_group(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool, runner: Runner
) -> None:
    user, _ = await setup(scim, services, tenant)
    assert (await scim.delete(f"/Users/{user}")).status_code == 204

    async def removed() -> bool:
        return ("UserRemovedFromOrganization", "okta_delete", "reactor") in await user_events(pool, user)

    await within(PROMISED_WITHIN, removed)
    remaining = await pool.fetchval("SELECT count(*) FROM group_members WHERE user_id = $1", uuid.UUID(user))
    assert remaining == 0


async def test_an_app_side_removal_revokes_access_and_shows_the_user_inactive_within_a_second(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool, runner: Runner
) -> None:
    user, _ = await setup(scim, services, tenant)
    await services.users.remove_from_organization(tenant.org.org_id, uuid.UUID(user), ADMIN)

    async def inactive_over_scim() -> bool:
        response = (await scim.get("/Users", params={"filter": f'id eq "{user}"'})).json()
        return response["Resources"][0]["active"] is False

    await within(PROMISED_WITHIN, inactive_over_scim)
    assert "groups" not in (await scim.get(f"/Users/{user}")).json()
    assert (await user_events(pool, user))[-4:] == [
        ("UserRemovedFromOrganization", "admin", "admin"),
        ("GroupMemberRemoved", "reactor", "reactor"),
        ("GroupMemberRemoved", "reactor", "reactor"),
        ("UserDeactivated", "", "reactor"),
    ]
    # The reactor's deactivation is not Okta's: nobody removes the user a second time.
    await asyncio.sleep(0.3)
    assert [
        event for event in await user_events(pool, user) if event[0] == "UserRemovedFromOrganization"
    ] == [("UserRemovedFromOrganization", "admin", "admin")]

    # Okta, seeing active false, unassigns: its PATCH and PUT still succeed.
    assert (await scim.patch(f"/Users/{user}", json=active(False))).status_code == 200
    current = (await scim.get(f"/Users/{user}")).json()
    assert (await scim.put(f"/Users/{user}", json=current)).status_code == 200
    # Assigned again in Okta: reactivation brings the user back into the organization.
    assert (await scim.patch(f"/Users/{user}", json=active(True))).status_code == 200
    assert (await user_events(pool, user))[-1] == ("UserJoinedOrganization", "okta_reactivation", "token")


async def test_an_app_side_removal_holds_against_oktas_profile_push_until_okta_reactivates_or_an_admin_restores(
    scim: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    pool: asyncpg.Pool,
    runner: Runner,
    cli_env: dict[str, str],
) -> None:
    """Okta's routine profile push is a PUT of the whole user, always with `active: true`; it must not bring
    back a user the app removed, or Okta would never unassign them. Okta's reactivation (a PATCH setting
    `active` to true) and the admin's `scimledger user restore` do."""
    org_id = tenant.org.org_id
    pushed_back, _ = await setup(scim, services, tenant)
    restored = (await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:6]}@acme.com"))).json()["id"]
    for user in (pushed_back, restored):
        await services.users.remove_from_organization(org_id, uuid.UUID(user), ADMIN)

    async def both_inactive() -> bool:
        users = [(await scim.get(f"/Users/{user}")).json() for user in (pushed_back, restored)]
        return all(user["active"] is False for user in users)

    await within(PROMISED_WITHIN, both_inactive)
    before_push = await user_events(pool, pushed_back)
    profile = {**(await scim.get(f"/Users/{pushed_back}")).json(), "active": True, "title": "CFO"}
    put = await scim.put(f"/Users/{pushed_back}", json=profile)
    assert put.status_code == 200, put.text
    assert (put.json()["active"], put.json()["title"]) == (False, "CFO")
    assert (await user_events(pool, pushed_back))[len(before_push) :] == [("UserProfileUpdated", "", "token")]
    assert (await scim.get(f"/Users/{pushed_back}")).json()["active"] is False

    reactivated = await scim.patch(f"/Users/{pushed_back}", json=active(True))
    assert reactivated.status_code == 200
    assert reactivated.json()["active"] is True
    assert (await user_events(pool, pushed_back))[-2:] == [
        ("UserReactivated", "", "token"),
        ("UserJoinedOrganization", "okta_reactivation", "token"),
    ]

    run_cli(cli_env, "user", "restore", "--org", tenant.org.name, restored)
    assert (await scim.get(f"/Users/{restored}")).json()["active"] is True
    assert (await user_events(pool, restored))[-2:] == [
        ("UserJoinedOrganization", "admin_restore", "admin"),
        ("UserReactivated", "", "admin"),
    ]
    again = run_cli(cli_env, "user", "restore", "--org", tenant.org.name, restored, check=False)
    assert again.returncode == 1
    assert "was not removed in the app" in again.stderr


async def test_a_deactivation_reversed_before_the_reactor_ran_removes_nobody(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    user, _ = await setup(scim, services, tenant)
    await scim.patch(f"/Users/{user}", json=active(False))
    await scim.patch(f"/Users/{user}", json=active(True))
    reactor = DeactivationRemovesFromOrganization()
    [deactivation] = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND type = 'UserDeactivated'",
        uuid.UUID(user),
    )
    await apply_directly(services, reactor, deactivation)
    assert [event[0] for event in await user_events(pool, user)][-2:] == [
        "UserDeactivated",
        "UserReactivated",
    ]


async def test_reacting_to_the_same_event_twice_changes_nothing_more(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    user, _ = await setup(scim, services, tenant)
    await scim.patch(f"/Users/{user}", json=active(False))
    reactor = DeactivationRemovesFromOrganization()
    [deactivation] = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND type = 'UserDeactivated'",
        uuid.UUID(user),
    )
    await apply_directly(services, reactor, deactivation)
    once = await user_events(pool, user)
    await apply_directly(services, reactor, deactivation)
    assert await user_events(pool, user) == once
    assert [event[0] for event in once].count("UserRemovedFromOrganization") == 1


async def test_one_batch_of_many_requests_records_each_decision_with_its_own_cause(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    _, groups = await setup(scim, services, tenant)
    users = [(await scim.post("/Users", json=okta_user(f"batch{n}@acme.com"))).json()["id"] for n in range(3)]
    await scim.patch(
        f"/Groups/{groups[0]}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": users[0]}]}],
        },
    )
    for n, user in enumerate(users):
        response = await scim.patch(
            f"/Users/{user}", json=active(False), headers={"X-Request-Id": f"okta-{n}"}
        )
        assert response.status_code == 200
    deactivations = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1::uuid[]) AND type = 'UserDeactivated' "
        "ORDER BY position",
        [uuid.UUID(user) for user in users],
    )
    await apply_directly(services, DeactivationRemovesFromOrganization(), *deactivations)

    for n, user in enumerate(users):
        caused = await pool.fetch(
            "SELECT type, request_id FROM events WHERE stream_id = $1 AND actor LIKE 'reactor:%' ORDER BY version",
            uuid.UUID(user),
        )
        expected = ["UserRemovedFromOrganization"] + (["GroupMemberRemoved"] if n == 0 else [])
        assert [row["type"] for row in caused] == expected
        assert {row["request_id"] for row in caused} == {f"okta-{n}"}
        row = await pool.fetchrow(
            "SELECT version, active FROM scim_users WHERE user_id = $1", uuid.UUID(user)
        )
        assert row["active"] is False
        assert row["version"] == await pool.fetchval(
            "SELECT max(version) FROM events WHERE stream_id = $1", uuid.UUID(user)
        )
    assert (
        await pool.fetchval("SELECT count(*) FROM group_members WHERE user_id = $1", uuid.UUID(users[0])) == 0
    )


async def apply_directly(
    services: Services, reactor: DeactivationRemovesFromOrganization, *rows: Any
) -> None:
    async with services.store.transaction() as transaction:
        await reactor.handle(transaction, [RecordedEvent(*row) for row in rows])
