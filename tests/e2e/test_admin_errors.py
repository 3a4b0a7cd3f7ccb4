"""Errors an Okta or Entra admin can act on (issue 19, point 6), over HTTP with Okta's own request shapes:
refused memberships that name every person and say why, pushes to a group the app archived or renamed, a
401 that says what was pasted wrong, and paths with doubled or trailing slashes."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.http.reading import patch_operations
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.errors import MAX_NAMED_MEMBERS, InvalidMember, moment
from eventstore.records import EVENT_COLUMNS, RecordedEvent
from reactors.membership import RemovalDeactivates
from scim.group_patch import plan_patch
from scim.query import SEARCH_REQUEST
from tests.conftest import Tenant, new_tenant, okta_user
from tests.e2e.test_groups_api import ADMIN, Catalog, find_group, make_catalog, member_ids, new_user, patch

ROOT = "http://scim.test"


@pytest.fixture
async def catalog(services: Services, tenant: Tenant) -> Catalog:
    """Projects Apollo and Zeus, roles Admin and Viewer: four groups, as in the Push Groups tests."""
    return await make_catalog(services, tenant)


def okta_add(*members: tuple[str, str]) -> dict[str, Any]:
    """Okta's membership push: ids with the display name Okta knows each person by."""
    return {
        "op": "add",
        "path": "members",
        "value": [{"value": member, "display": display} for member, display in members],
    }


def okta_name_echo(group_id: str, display_name: str) -> dict[str, Any]:
    """What Okta sends after every membership change: the group's id and its name in Okta."""
    return {"op": "replace", "value": {"id": group_id, "displayName": display_name}}


async def event_time(pool: asyncpg.Pool, stream_id: str | uuid.UUID, event_type: str) -> str:
    occurred = await pool.fetchval(
        "SELECT occurred_at FROM events WHERE stream_id = $1 AND type = $2 ORDER BY position DESC LIMIT 1",
        uuid.UUID(str(stream_id)),
        event_type,
    )
    assert occurred is not None
    return moment(occurred)


async def react_as_the_runner_would(
    services: Services, pool: asyncpg.Pool, user_id: str, event_type: str
) -> None:
    """What the app-side removal's reactor decides (revoke access, show the user inactive), decided at once
    rather than waited for: the shared test session runs no runner."""
    rows = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND type = $2",
        uuid.UUID(user_id),
        event_type,
    )
    async with services.store.transaction() as transaction:
        await RemovalDeactivates().handle(transaction, [RecordedEvent(*row) for row in rows])


async def count_events(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM events")
    return count


# --- Membership refusals ---------------------------------------------------------------------------------


async def test_a_refused_push_names_every_offending_member_and_why_and_applies_nothing(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services, pool: asyncpg.Pool
) -> None:
    org_id = catalog.tenant.org.org_id
    group = await find_group(scim, "Statsig-Apollo-Admin")
    fine = await new_user(scim, "fine@acme.com")
    deactivated = await new_user(scim, "dee@acme.com")
    await scim.patch(f"/Users/{deactivated}", json=patch({"op": "replace", "value": {"active": False}}))
    removed = (
        await scim.post(
            "/Users",
            json=okta_user("rem@acme.com", displayName=None, name={"givenName": "Rem", "familyName": "Ode"}),
        )
    ).json()["id"]
    await services.users.remove_from_organization(org_id, uuid.UUID(removed), ADMIN)
    await react_as_the_runner_would(services, pool, removed, "UserRemovedFromOrganization")
    deleted = await new_user(scim, "del@acme.com")
    assert (await scim.delete(f"/Users/{deleted}")).status_code == 204
    unknown = str(uuid.uuid4())
    before = await count_events(pool)

    response = await scim.patch(
        f"/Groups/{group['id']}",
        json=patch(
            okta_add(
                (fine, "Fine"),
                (deactivated, "Dee"),
                (removed, "Rem Ode"),
                (deleted, "Del"),
                (unknown, "Una Known"),
                ("00u1okta", "Not An Id"),
            ),
            okta_name_echo(group["id"], "Statsig-Apollo-Admin"),
        ),
    )

    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    detail = response.json()["detail"]
    removed_on = await event_time(pool, removed, "UserRemovedFromOrganization")
    assert detail.startswith(
        "5 members of this request cannot be added to the group, so nothing in the request"
    )
    for expected in (
        "'dee@acme.com' (Isaac Brock) is deactivated in the identity provider",
        f"'rem@acme.com' (Rem Ode) was removed from the organization in the app on {removed_on}",
        "'del@acme.com' (Isaac Brock) was deleted by the identity provider",
        f"'{unknown}' (sent as 'Una Known') is not a user of this organization",
        "'00u1okta' (sent as 'Not An Id') is not a user of this organization",
    ):
        assert expected in detail
    assert "fine@acme.com" not in detail
    assert await member_ids(scim, group["id"]) == []
    assert await count_events(pool) == before, "nothing was recorded, not even the link"


async def test_a_refusal_of_hundreds_names_some_and_counts_the_rest(
    scim: httpx.AsyncClient, catalog: Catalog
) -> None:
    group = await find_group(scim, "Statsig-Zeus-Viewer")
    strangers = [(str(uuid.uuid4()), f"Person {index}") for index in range(250)]
    response = await scim.put(
        f"/Groups/{group['id']}",
        json={
            "displayName": "Statsig-Zeus-Viewer",
            "members": [{"value": value, "display": display} for value, display in strangers],
        },
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("250 members of this request")
    assert detail.endswith(f"; and {250 - MAX_NAMED_MEMBERS} more.")
    assert [value for value, _ in strangers if value in detail] == [
        value for value, _ in strangers[:MAX_NAMED_MEMBERS]
    ]


async def test_naming_refused_members_costs_no_round_trip_per_member(
    counted_services: tuple[Services, list[str]], pool: asyncpg.Pool
) -> None:
    """The users are loaded by the write path, in batches; naming them reads nothing more, so refusing 400
    deactivated members takes the statements refusing 2 takes."""
    services, statements = counted_services
    tenant = await new_tenant(pool)
    org_id = tenant.org.org_id
    await services.catalog.create(PROJECT, org_id, "Hermes", ADMIN)
    await services.catalog.create(ROLE, org_id, "Pilot", ADMIN)
    async with pool.acquire() as connection:
        group_id = await connection.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", org_id)
    users = [
        (
            await services.users.provision(org_id, {"userName": f"u{index}@acme.com", "active": False}, ADMIN)
        ).user_id
        for index in range(400)
    ]

    async def statements_to_refuse(members: list[uuid.UUID]) -> list[str]:
        change = plan_patch(patch_operations(patch(okta_add(*((str(member), "x") for member in members)))))
        statements.clear()
        with pytest.raises(InvalidMember, match="cannot be added to the group"):
            await services.groups.change(org_id, group_id, change, ADMIN)
        # The request's own transaction: not the commit notices sent on the connection before it.
        return statements[statements.index("BEGIN;") :]

    await statements_to_refuse(users[:2])  # asyncpg reads the types it meets once per connection
    refusing_two = await statements_to_refuse(users[:2])
    assert refusing_two[-1] == "ROLLBACK;"
    assert await statements_to_refuse(users) == refusing_two


# --- Groups the app archived or renamed ------------------------------------------------------------------


async def test_a_push_to_a_group_whose_project_was_archived_says_so_and_when(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services, pool: asyncpg.Pool
) -> None:
    group = await find_group(scim, "Statsig-Zeus-Admin")
    user = await new_user(scim)
    await services.catalog.archive(PROJECT, catalog.tenant.org.org_id, "Zeus", ADMIN)
    archived_on = await event_time(pool, catalog.projects["Zeus"], "ProjectArchived")
    before = await count_events(pool)
    path = f"/Groups/{group['id']}"

    for response in (
        await scim.patch(path, json=patch(okta_add((user, "Isaac Brock")))),
        await scim.put(path, json={"displayName": "Statsig-Zeus-Admin", "members": [{"value": user}]}),
        await scim.get(path),
        await scim.delete(path),
    ):
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert detail.startswith(
            f"The group 'Statsig-Zeus-Admin' no longer exists: the app archived the project 'Zeus' on "
            f"{archived_on}, which removed its groups"
        )
        assert "unlink the group under Push Groups" in detail
    assert await count_events(pool) == before


async def test_a_group_of_an_archived_role_names_the_role(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services, pool: asyncpg.Pool
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Viewer")
    await services.catalog.archive(ROLE, catalog.tenant.org.org_id, "Viewer", ADMIN)
    archived_on = await event_time(pool, catalog.roles["Viewer"], "RoleArchived")
    response = await scim.patch(f"/Groups/{group['id']}", json=patch(okta_add((str(uuid.uuid4()), "x"))))
    assert response.status_code == 404
    assert f"the app archived the role 'Viewer' on {archived_on}" in response.json()["detail"]


async def test_an_unknown_or_another_organizations_archived_group_is_a_plain_404(
    scim: httpx.AsyncClient, services: Services, pool: asyncpg.Pool
) -> None:
    other: Tenant = await new_tenant(pool)
    await services.catalog.create(PROJECT, other.org.org_id, "Theirs", ADMIN)
    await services.catalog.create(ROLE, other.org.org_id, "Only", ADMIN)
    async with pool.acquire() as connection:
        their_group = await connection.fetchval(
            "SELECT group_id FROM scim_groups WHERE org_id = $1", other.org.org_id
        )
    await services.catalog.archive(PROJECT, other.org.org_id, "Theirs", ADMIN)
    for group_id in (uuid.uuid4(), their_group):
        response = await scim.get(f"/Groups/{group_id}")
        assert response.status_code == 404
        assert response.json()["detail"] == f"No group {group_id} in this organization."


async def test_a_push_carrying_the_name_before_the_app_renamed_the_project_says_so(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services, pool: asyncpg.Pool
) -> None:
    org_id = catalog.tenant.org.org_id
    group = await find_group(scim, "Statsig-Apollo-Viewer")
    user = await new_user(scim)
    await services.catalog.rename(PROJECT, org_id, "Apollo", "Artemis", ADMIN)
    renamed_on = await event_time(pool, catalog.projects["Apollo"], "ProjectRenamed")
    before = await count_events(pool)
    path = f"/Groups/{group['id']}"

    pushed = await scim.patch(
        path,
        json=patch(okta_add((user, "Isaac Brock")), okta_name_echo(group["id"], "Statsig-Apollo-Viewer")),
    )
    put = await scim.put(path, json={"displayName": "Statsig-Apollo-Viewer", "members": [{"value": user}]})

    for response in (pushed, put):
        assert response.status_code == 400
        assert response.json()["scimType"] == "mutability"
        detail = response.json()["detail"]
        assert detail.startswith(
            "The group 'Statsig-Apollo-Viewer' is now 'Statsig-Artemis-Viewer': the app renamed the project "
            f"'Apollo' to 'Artemis' on {renamed_on}. Nothing in this request was applied."
        )
        assert "rename the pushed group to 'Statsig-Artemis-Viewer'" in detail
    assert await count_events(pool) == before
    assert await member_ids(scim, group["id"]) == []


async def test_a_name_from_before_both_renames_names_both(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services, pool: asyncpg.Pool
) -> None:
    org_id = catalog.tenant.org.org_id
    group = await find_group(scim, "Statsig-Zeus-Admin")
    await services.catalog.rename(PROJECT, org_id, "Zeus", "Jupiter", ADMIN)
    await services.catalog.rename(ROLE, org_id, "Admin", "Owner", ADMIN)
    await services.catalog.rename(ROLE, org_id, "Owner", "Steward", ADMIN)
    project_on = await event_time(pool, catalog.projects["Zeus"], "ProjectRenamed")
    role_on = await event_time(pool, catalog.roles["Admin"], "RoleRenamed")
    response = await scim.patch(
        f"/Groups/{group['id']}", json=patch(okta_name_echo(group["id"], "Statsig-Zeus-Owner"))
    )
    assert response.json()["detail"].startswith(
        "The group 'Statsig-Zeus-Owner' is now 'Statsig-Jupiter-Steward': the app renamed the project 'Zeus' "
        f"to 'Jupiter' on {project_on}; the app renamed the role 'Owner' to 'Steward' on {role_on}."
    )
    # A name the group never had is Okta renaming it: that advice stays.
    renamed_in_okta = await scim.patch(
        f"/Groups/{group['id']}", json=patch(okta_name_echo(group["id"], "Statsig-Zeus-Admins"))
    )
    assert renamed_in_okta.json()["scimType"] == "mutability"
    assert "turn off 'Rename Groups'" in renamed_in_okta.json()["detail"]
    assert "now 'Statsig" not in renamed_in_okta.json()["detail"]


async def test_group_names_are_compared_ignoring_case_as_displayName_is(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Admin")
    # The current name in another case is the group's own name (caseExact false): accepted.
    same = await scim.patch(
        f"/Groups/{group['id']}", json=patch(okta_name_echo(group["id"], "STATSIG-apollo-ADMIN"))
    )
    assert same.status_code in (200, 204), same.text
    await services.catalog.rename(PROJECT, catalog.tenant.org.org_id, "Apollo", "Juno", ADMIN)
    former = await scim.patch(
        f"/Groups/{group['id']}", json=patch(okta_name_echo(group["id"], "statsig-APOLLO-admin"))
    )
    assert former.status_code == 400
    assert former.json()["detail"].startswith(
        "The group 'statsig-APOLLO-admin' is now 'Statsig-Juno-Admin': the app renamed the project 'Apollo' to 'Juno'"
    )


# --- 401 -------------------------------------------------------------------------------------------------


async def test_an_unknown_token_sends_the_okta_admin_to_the_apps_administrator(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/Users", headers={"Authorization": "Bearer scl_unknown"})
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert "unknown or has been revoked" in detail
    assert "Ask the app's administrator for a new SCIM token" in detail
    assert "scimledger token issue" not in detail


@pytest.mark.parametrize("scheme", ["Bearer Bearer", "bearer BEARER", "Bearer bearer"])
async def test_bearer_pasted_into_a_field_that_adds_it_is_refused_saying_so(
    http: httpx.AsyncClient, tenant: Tenant, scheme: str
) -> None:
    response = await http.get("/Users", headers={"Authorization": f"{scheme} {tenant.token}"})
    assert response.status_code == 401, "refused even though the token itself is valid"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"].startswith(
        "The Authorization header says 'Bearer' twice ('Bearer Bearer <token>'): the token field in your "
        "identity provider already adds 'Bearer ', and the token was pasted with it."
    )


@pytest.mark.parametrize(
    ("pasted", "says"),
    [
        ('"{token}"', "wrapped in quotation marks"),
        ("'{token}'", "wrapped in quotation marks"),
        ("\u201c{token}\u201d", "wrapped in quotation marks"),
        ("{token} copied", "contains a space or a line break"),
        ("Bearer", "with no token after it"),
    ],
)
async def test_a_token_pasted_with_extra_characters_gets_a_detail_that_says_which(
    http: httpx.AsyncClient, tenant: Tenant, pasted: str, says: str
) -> None:
    header = f"Bearer {pasted.format(token=tenant.token)}"
    response = await http.get("/Users", headers={"Authorization": header.encode()})
    assert response.status_code == 401
    assert says in response.json()["detail"]


async def test_spaces_around_the_token_are_forgiven(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.get("/Users", headers={"Authorization": f"  Bearer    {tenant.token}  "})
    assert response.status_code == 200


# --- Paths -----------------------------------------------------------------------------------------------


async def test_doubled_and_trailing_slashes_are_served_as_the_path_without_them(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await http.post(
        f"{ROOT}/scim/v2//Users", json=okta_user("slash@acme.com"), headers=tenant.headers
    )
    assert created.status_code == 201, "a base URL pasted with a trailing slash, and Okta's '/Users' after it"
    user_id = created.json()["id"]
    assert created.json()["meta"]["location"] == f"{ROOT}/scim/v2/Users/{user_id}"
    for path in (f"/scim/v2/Users//{user_id}", f"/scim/v2/Users/{user_id}/", f"//scim//v2///Users/{user_id}"):
        response = await http.get(f"{ROOT}{path}", headers=tenant.headers)
        assert response.status_code == 200, path
        assert response.json()["id"] == user_id
    listed = await http.get(f"{ROOT}/scim/v2/Users/", params={"count": 1}, headers=tenant.headers)
    assert listed.status_code == 200
    assert listed.json()["totalResults"] == 1


async def test_an_endpoint_spelled_in_another_case_is_served(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """Microsoft's reference tests request `/users`: the endpoint's name is matched ignoring case."""
    created = await http.post(
        f"{ROOT}/scim/v2/users", json=okta_user("case@acme.com"), headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    for path in (f"/scim/v2/USERS/{user_id}", f"/scim/v2//users/{user_id}/"):
        response = await http.get(f"{ROOT}{path}", headers=tenant.headers)
        assert response.status_code == 200, path
        assert response.json()["id"] == user_id
    found = await http.post(
        f"{ROOT}/scim/v2/USERS/.Search",
        json={"schemas": [SEARCH_REQUEST], "filter": 'userName eq "case@acme.com"'},
        headers=tenant.headers,
    )
    assert [user["id"] for user in found.json()["Resources"]] == [user_id]
    for path in ("/scim/v2/serviceproviderconfig", "/scim/v2/resourcetypes/User", "/scim/v2/Groups?count=1"):
        assert (await http.get(f"{ROOT}{path}", headers=tenant.headers)).status_code == 200, path
    assert (await http.get(f"{ROOT}/SCIM/V2/Users", headers=tenant.headers)).status_code == 200


async def test_an_encoded_slash_separates_nothing_and_names_its_path_in_the_404(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await http.post(
        f"{ROOT}/scim/v2/Users", json=okta_user("encoded@acme.com"), headers=tenant.headers
    )
    user_id = created.json()["id"]
    for path in (f"/scim/v2/Users%2F{user_id}", "/scim%2Fv2%2FUsers", f"/scim/v2/Users%2f{user_id}"):
        response = await http.get(f"{ROOT}{path}", headers=tenant.headers)
        assert response.status_code == 404, path
        assert path in response.json()["detail"]


async def test_two_authorization_headers_are_refused_even_when_both_are_valid(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    other = await new_tenant(pool)
    headers = [
        ("Authorization", tenant.headers["Authorization"]),
        ("Authorization", other.headers["Authorization"]),
    ]
    response = await http.get(f"{ROOT}/scim/v2/Users", headers=headers)
    assert response.status_code == 401
    assert "2 Authorization headers" in response.json()["detail"]


async def test_an_unmatched_path_is_named_in_the_404_and_in_the_access_log(
    http: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scimledger.access"):
        response = await http.get(f"{ROOT}/scim/v2//Userz/", headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["detail"].startswith("No such endpoint: /scim/v2//Userz/. The SCIM base URL")
    [line] = [record for record in caplog.records if record.name == "scimledger.access"]
    assert line.getMessage() == "GET /scim/v2//Userz/ 404"
    assert (line.__dict__["route"], line.__dict__["path"]) == ("unmatched", "/scim/v2//Userz/")


async def test_a_matched_route_is_logged_by_its_template_never_its_path(
    http: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scimledger.access"):
        await http.get(f"{ROOT}/scim/v2/Users//{uuid.uuid4()}", headers=tenant.headers)
    [line] = [record for record in caplog.records if record.name == "scimledger.access"]
    assert line.getMessage() == "GET /scim/v2/Users/{id} 404"
    assert line.__dict__["path"] is None
