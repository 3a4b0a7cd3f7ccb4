"""An app-side removal holds until someone means to undo it (issue 19, point 5), over HTTP with Okta's and
Entra's exact request shapes: Entra's routine update, the admin's removal of a user who had already left,
group pushes before the reactor ran, and the audit's history of a user named by userName.

The reactors' decisions are made at once rather than waited for (the shared test session runs no runner),
exactly as the runner would make them: from the recorded events."""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx

from app.services.container import Services
from domain.errors import moment
from eventstore.records import EVENT_COLUMNS
from reactors.membership import DeactivationRemovesFromOrganization, RemovalDeactivates, UserReactor
from tests.conftest import Tenant, okta_user
from tests.e2e.test_groups_api import ADMIN, Catalog, find_group, make_catalog, member_ids, patch
from tests.e2e.test_reactors import active, apply_directly, user_events
from tests.e2e.test_users_api import PATCH_OP
from tests.service import run_cli

# Entra capitalises op names and sends booleans as strings.
ENTRA_ACTIVATION = {"op": "Replace", "path": "active", "value": "True"}


async def react(
    services: Services, pool: asyncpg.Pool, reactor: type[UserReactor], user_id: str, event_type: str
) -> None:
    """What `reactor` decides on the user's events of `event_type`, decided as the runner would."""
    rows = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND type = $2 ORDER BY version",
        uuid.UUID(user_id),
        event_type,
    )
    await apply_directly(services, reactor(), *rows)


async def removed_by_admin(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> str:
    """A user an org admin removed, once the reactor revoked their access and showed them inactive."""
    user = (await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@acme.com"))).json()["id"]
    await services.users.remove_from_organization(tenant.org.org_id, uuid.UUID(user), ADMIN)
    await react(services, pool, RemovalDeactivates, user, "UserRemovedFromOrganization")
    assert (await scim.get(f"/Users/{user}")).json()["active"] is False
    return user


async def test_entras_routine_update_changes_the_profile_and_leaves_an_admins_removal_in_place(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Entra PATCHes every mapped attribute that differs from what it read, `active` among them once the app
    shows the user inactive: an update, not a reactivation."""
    user = await removed_by_admin(scim, services, tenant, pool)
    before = await user_events(pool, user)

    update = patch({"op": "Replace", "path": "displayName", "value": "New Name"}, ENTRA_ACTIVATION)
    response = await scim.patch(f"/Users/{user}", json=update)

    assert response.status_code == 200, response.text
    assert (response.json()["displayName"], response.json()["active"]) == ("New Name", False)
    assert (await user_events(pool, user))[len(before) :] == [("UserProfileUpdated", "", "token")]
    assert (await scim.get(f"/Users/{user}")).json()["active"] is False


async def test_entras_activation_alone_brings_a_removed_user_back(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The limit README states: Entra corrects a drift of `active` alone with its reactivation's request."""
    user = await removed_by_admin(scim, services, tenant, pool)
    response = await scim.patch(f"/Users/{user}", json=patch(ENTRA_ACTIVATION))
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    assert (await user_events(pool, user))[-2:] == [
        ("UserReactivated", "", "token"),
        ("UserJoinedOrganization", "okta_reactivation", "token"),
    ]


async def test_removing_a_user_okta_deactivated_records_the_admins_removal_which_then_holds_against_a_push(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    org = tenant.org.name
    user_name = f"{uuid.uuid4().hex[:8]}@acme.com"
    user = (await scim.post("/Users", json=okta_user(user_name))).json()["id"]
    assert (await scim.patch(f"/Users/{user}", json=active(False))).status_code == 200
    await react(services, pool, DeactivationRemovesFromOrganization, user, "UserDeactivated")
    left = await pool.fetchval(
        "SELECT occurred_at FROM events WHERE stream_id = $1 AND type = 'UserRemovedFromOrganization'",
        uuid.UUID(user),
    )

    removed = run_cli(cli_env, "user", "remove", "--org", org, user_name)

    assert f"had already left '{org}' on {moment(left)} (their identity provider deactivated them)" in (
        removed.stdout
    )
    assert "removed user" not in removed.stdout
    assert (await user_events(pool, user))[-2:] == [
        ("UserRemovedFromOrganization", "okta_deactivation", "reactor"),
        ("UserRemovedFromOrganization", "admin", "admin"),
    ]
    # The reactor of admin removals finds nothing more to do: their access was revoked and they are inactive.
    settled = await user_events(pool, user)
    await react(services, pool, RemovalDeactivates, user, "UserRemovedFromOrganization")
    assert await user_events(pool, user) == settled
    shown = json.loads(run_cli(cli_env, "user", "show", "--org", org, user, "--format", "json").stdout)
    assert (shown["member"], shown["removed_by_admin"]) == (False, True)

    # Okta's profile push, always with `active: true`, no longer brings them back.
    profile = {**(await scim.get(f"/Users/{user}")).json(), "active": True, "title": "CFO"}
    pushed = await scim.put(f"/Users/{user}", json=profile)
    assert pushed.status_code == 200, pushed.text
    assert (pushed.json()["active"], pushed.json()["title"]) == (False, "CFO")
    assert (await user_events(pool, user))[len(settled) :] == [("UserProfileUpdated", "", "token")]

    # Removing them again is refused, says why, and records nothing.
    again = run_cli(cli_env, "user", "remove", "--org", org, user, check=False)
    assert again.returncode == 1
    assert "was already removed from the organization in the app on" in again.stderr
    assert "nothing more to remove" in again.stderr
    assert again.stdout == ""
    assert len(await user_events(pool, user)) == len(settled) + 1

    # Restoring would make them active while Okta has them deactivated: refused, saying what to do instead.
    restore = run_cli(cli_env, "user", "restore", "--org", org, user_name, check=False)
    assert restore.returncode == 1
    assert (
        f"had already left the organization on {moment(left)} because their identity provider deactivated"
        in (restore.stderr)
    )
    assert "reactivate them in the identity provider instead" in restore.stderr
    assert len(await user_events(pool, user)) == len(settled) + 1
    # Okta's reactivation, an explicit one, undoes both.
    reactivated = await scim.patch(
        f"/Users/{user}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]},
    )
    assert reactivated.json()["active"] is True
    shown = json.loads(run_cli(cli_env, "user", "show", "--org", org, user, "--format", "json").stdout)
    assert (shown["member"], shown["removed_by_admin"]) == (True, False)


async def test_a_user_an_admin_removed_cannot_be_pushed_into_a_group_even_before_the_reactor_ran(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """README: only active members of the organization may join a group. Right after the admin's removal
    the user is still active (the reactor has not deactivated them yet), but no longer a member."""
    catalog: Catalog = await make_catalog(services, tenant)
    group = await find_group(scim, "Statsig-Apollo-Admin")
    user = (await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@acme.com"))).json()["id"]
    await services.users.remove_from_organization(catalog.tenant.org.org_id, uuid.UUID(user), ADMIN)
    assert (await scim.get(f"/Users/{user}")).json()["active"] is True
    before = await user_events(pool, user)

    push = {"op": "add", "path": "members", "value": [{"value": user, "display": "Isaac Brock"}]}
    response = await scim.patch(f"/Groups/{group['id']}", json=patch(push))

    assert response.status_code == 400, response.text
    removed_at = await pool.fetchval(
        "SELECT occurred_at FROM events WHERE stream_id = $1 AND type = 'UserRemovedFromOrganization'",
        uuid.UUID(user),
    )
    assert (
        f"was removed from the organization in the app on {moment(removed_at)}" in response.json()["detail"]
    )
    assert await member_ids(scim, group["id"]) == []
    assert await user_events(pool, user) == before


async def test_audit_history_names_a_user_by_user_name_and_a_deleted_one_by_id(
    scim: httpx.AsyncClient, tenant: Tenant, cli_env: dict[str, str]
) -> None:
    org = tenant.org.name
    user_name = f"{uuid.uuid4().hex[:8]}@acme.com"
    user = (await scim.post("/Users", json=okta_user(user_name))).json()["id"]
    await scim.patch(f"/Users/{user}", json=active(False))
    gone = (await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@acme.com"))).json()["id"]
    assert (await scim.delete(f"/Users/{gone}")).status_code == 204

    def history(reference: str) -> list[tuple[str, str]]:
        printed = run_cli(cli_env, "audit", "history", "--org", org, "--user", reference, "--format", "jsonl")
        return [(row["subject"], row["type"]) for row in map(json.loads, printed.stdout.splitlines())]

    expected = [(user, "UserProvisioned"), (user, "UserDeactivated")]
    assert history(user_name.upper()) == expected  # ignoring case, as SCIM does
    assert history(user) == expected
    assert history(gone) == [(gone, "UserProvisioned"), (gone, "UserDeleted")]
    unknown = run_cli(cli_env, "audit", "history", "--org", org, "--user", "nobody@acme.com", check=False)
    assert unknown.returncode == 1
    assert "No user 'nobody@acme.com' (by id or userName)" in unknown.stderr
    assert "A deleted user is named by their id." in unknown.stderr
