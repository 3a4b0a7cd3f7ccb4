"""Okta's Push Groups against the app's Project × Role groups, over HTTP."""

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.errors import NameTaken
from eventstore.records import Metadata
from tests.conftest import Tenant, new_tenant, okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ADMIN = Metadata("admin:test")


@dataclass
class Catalog:
    tenant: Tenant
    projects: dict[str, uuid.UUID]
    roles: dict[str, uuid.UUID]


async def make_catalog(services: Services, tenant: Tenant) -> Catalog:
    org_id = tenant.org.org_id
    projects = {
        name: (await services.catalog.create(PROJECT, org_id, name, ADMIN))[0] for name in ("Apollo", "Zeus")
    }
    roles = {
        name: (await services.catalog.create(ROLE, org_id, name, ADMIN))[0] for name in ("Admin", "Viewer")
    }
    return Catalog(tenant, projects, roles)


@pytest.fixture
async def catalog(services: Services, tenant: Tenant) -> Catalog:
    return await make_catalog(services, tenant)


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def add(*user_ids: str) -> dict[str, Any]:
    return {
        "op": "add",
        "path": "members",
        "value": [{"value": user_id, "display": "x"} for user_id in user_ids],
    }


def remove(user_id: str) -> dict[str, Any]:
    return {"op": "remove", "path": f'members[value eq "{user_id}"]'}


async def find_group(scim: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await scim.get("/Groups", params={"filter": f'displayName eq "{name}"'})
    assert response.status_code == 200
    [group] = response.json()["Resources"]
    return group  # type: ignore[no-any-return]


async def new_user(scim: httpx.AsyncClient, name: str | None = None) -> str:
    response = await scim.post("/Users", json=okta_user(name or f"{uuid.uuid4().hex[:8]}@acme.com"))
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def member_ids(scim: httpx.AsyncClient, group_id: str) -> list[str]:
    body = (await scim.get(f"/Groups/{group_id}")).json()
    return [member["value"] for member in body.get("members", [])]


async def group_events(pool: asyncpg.Pool, group_id: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT type, coalesce(payload->>'cause', ''), actor FROM events "
        "WHERE stream_id = $1 OR payload->>'group_id' = $2 ORDER BY position",
        uuid.UUID(group_id),
        group_id,
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def test_oktas_whole_push_groups_story(
    scim: httpx.AsyncClient, catalog: Catalog, pool: asyncpg.Pool
) -> None:
    token = f"token:{catalog.tenant.token_id}"
    imported = (await scim.get("/Groups", params={"excludedAttributes": "members"})).json()
    assert sorted(group["displayName"] for group in imported["Resources"]) == [
        "Statsig-Apollo-Admin",
        "Statsig-Apollo-Viewer",
        "Statsig-Zeus-Admin",
        "Statsig-Zeus-Viewer",
    ]

    group = await find_group(scim, "Statsig-Apollo-Admin")  # Link Group matches by exact name
    group_id = group["id"]
    path = f"/Groups/{group_id}"
    ann, bob, cy = [await new_user(scim, f"{name}@acme.com") for name in ("ann", "bob", "cy")]

    pushed = await scim.patch(path, json=patch(add(ann, bob)))
    assert pushed.status_code == 204
    echo = {"op": "replace", "value": {"id": group_id, "displayName": "Statsig-Apollo-Admin"}}
    assert (await scim.patch(path, json=patch(echo))).status_code == 204
    fetched = (await scim.get(path)).json()
    assert fetched["schemas"] == [GROUP]
    assert fetched["members"] == [
        {
            "value": ann,
            "display": "Isaac Brock",
            "$ref": f"http://scim.test/scim/v2/Users/{ann}",
            "type": "User",
        },
        {
            "value": bob,
            "display": "Isaac Brock",
            "$ref": f"http://scim.test/scim/v2/Users/{bob}",
            "type": "User",
        },
    ]
    bob_groups = (await scim.get(f"/Users/{bob}")).json()["groups"]
    assert bob_groups == [
        {
            "value": group_id,
            "display": "Statsig-Apollo-Admin",
            "$ref": f"http://scim.test/scim/v2/Groups/{group_id}",
            "type": "direct",
        }
    ]

    assert (await scim.patch(path, json=patch(remove(ann)))).status_code == 204
    assert (await scim.patch(path, json=patch(echo))).status_code == 204
    assert await member_ids(scim, group_id) == [bob]

    resync = {"op": "replace", "path": "members", "value": [{"value": cy}]}
    assert (await scim.patch(path, json=patch(resync))).status_code == 204
    assert await member_ids(scim, group_id) == [cy]

    assert (await scim.delete(path)).status_code == 204
    unlinked = (await scim.get(path)).json()
    assert unlinked["displayName"] == "Statsig-Apollo-Admin"
    assert "members" not in unlinked
    assert "groups" not in (await scim.get(f"/Users/{cy}")).json()

    assert (await scim.patch(path, json=patch(add(ann)))).status_code == 204  # linked again
    assert await member_ids(scim, group_id) == [ann]

    assert await group_events(pool, group_id) == [
        ("GroupCreated", "", "admin:test"),
        ("GroupLinked", "", token),
        ("GroupMemberAdded", "push", token),
        ("GroupMemberAdded", "push", token),
        ("GroupMemberRemoved", "push", token),
        ("GroupMemberRemoved", "push", token),
        ("GroupMemberAdded", "push", token),
        ("GroupMemberRemoved", "unlink", token),
        ("GroupUnlinked", "unlink", token),
        ("GroupLinked", "", token),
        ("GroupMemberAdded", "push", token),
    ]


async def test_creating_a_group_through_scim_is_refused_with_advice(scim: httpx.AsyncClient) -> None:
    response = await scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Statsig-New-Group"})
    assert response.status_code == 403
    assert "Link Group" in response.json()["detail"]
    assert "created in the app" in response.json()["detail"]


async def test_renaming_through_okta_is_refused_and_nothing_changes(
    scim: httpx.AsyncClient, catalog: Catalog
) -> None:
    group = await find_group(scim, "Statsig-Zeus-Viewer")
    user = await new_user(scim)
    rename = {"op": "replace", "value": {"id": group["id"], "displayName": "Okta Name"}}
    response = await scim.patch(f"/Groups/{group['id']}", json=patch(add(user), rename))
    assert response.status_code == 400
    assert response.json()["scimType"] == "mutability"
    assert "Rename Groups" in response.json()["detail"]
    put = await scim.put(f"/Groups/{group['id']}", json={"displayName": "Okta Name", "members": []})
    assert put.json()["scimType"] == "mutability"
    assert await member_ids(scim, group["id"]) == []
    assert (await scim.get(f"/Groups/{group['id']}")).json()["displayName"] == "Statsig-Zeus-Viewer"


async def test_put_replaces_the_membership(scim: httpx.AsyncClient, catalog: Catalog) -> None:
    group = await find_group(scim, "Statsig-Zeus-Admin")
    first, second = await new_user(scim), await new_user(scim)
    await scim.patch(f"/Groups/{group['id']}", json=patch(add(first)))
    response = await scim.put(
        f"/Groups/{group['id']}",
        json={"schemas": [GROUP], "displayName": "Statsig-Zeus-Admin", "members": [{"value": second}]},
    )
    assert response.status_code == 200
    assert [member["value"] for member in response.json()["members"]] == [second]


@pytest.mark.parametrize("problem", ["unknown", "not-a-uuid", "other-org", "deactivated"])
async def test_an_invalid_member_fails_the_whole_request_naming_them(
    scim: httpx.AsyncClient, http: httpx.AsyncClient, catalog: Catalog, pool: asyncpg.Pool, problem: str
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Viewer")
    valid = await new_user(scim)
    if problem == "unknown":
        bad = str(uuid.uuid4())
    elif problem == "not-a-uuid":
        bad = "00u1abcd"
    elif problem == "other-org":
        other = await new_tenant(pool)
        created = await http.post("/Users", json=okta_user("elsewhere@x.org"), headers=other.headers)
        bad = created.json()["id"]
    else:
        bad = await new_user(scim, "deactivated@acme.com")
        await scim.patch(f"/Users/{bad}", json=patch({"op": "replace", "value": {"active": False}}))
    before = await pool.fetchval("SELECT count(*) FROM events")
    response = await scim.patch(f"/Groups/{group['id']}", json=patch(add(valid), add(bad)))
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    # A user of the organization is named as the admin knows them; any other id, by the id.
    assert ("deactivated@acme.com" if problem == "deactivated" else bad) in response.json()["detail"]
    assert await member_ids(scim, group["id"]) == []
    assert await pool.fetchval("SELECT count(*) FROM events") == before, (
        "nothing was recorded, not even the link"
    )


async def test_adding_twice_or_removing_an_absent_member_is_a_no_op(
    scim: httpx.AsyncClient, catalog: Catalog, pool: asyncpg.Pool
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Viewer")
    user, stranger = await new_user(scim), await new_user(scim)
    await scim.patch(f"/Groups/{group['id']}", json=patch(add(user)))
    events = len(await group_events(pool, group["id"]))
    again = await scim.patch(
        f"/Groups/{group['id']}", json=patch(add(user), remove(stranger), remove("junk"))
    )
    assert again.status_code == 204
    assert len(await group_events(pool, group["id"])) == events
    assert await member_ids(scim, group["id"]) == [user]


async def test_ten_concurrent_patches_adding_ten_members_all_land(
    scim: httpx.AsyncClient, catalog: Catalog
) -> None:
    group = await find_group(scim, "Statsig-Zeus-Admin")
    users = [await new_user(scim) for _ in range(10)]
    responses = await asyncio.gather(
        *(scim.patch(f"/Groups/{group['id']}", json=patch(add(user))) for user in users)
    )
    assert [response.status_code for response in responses] == [204] * 10
    assert sorted(await member_ids(scim, group["id"])) == sorted(users)


async def test_patch_returns_the_group_when_attributes_are_asked_for(
    scim: httpx.AsyncClient, catalog: Catalog
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Admin")
    user = await new_user(scim)
    response = await scim.patch(
        f"/Groups/{group['id']}", params={"attributes": "members"}, json=patch(add(user))
    )
    assert response.status_code == 200
    assert set(response.json()) == {"schemas", "id", "members"}


async def test_group_filters_and_user_filters_on_groups(scim: httpx.AsyncClient, catalog: Catalog) -> None:
    apollo = await find_group(scim, "Statsig-Apollo-Admin")
    user = await new_user(scim, "filtered@acme.com")
    await scim.patch(f"/Groups/{apollo['id']}", json=patch(add(user)))

    async def names(text: str) -> list[str]:
        response = await scim.get("/Groups", params={"filter": text, "sortBy": "displayName"})
        assert response.status_code == 200, response.text
        return [group["displayName"] for group in response.json()["Resources"]]

    assert await names('displayName eq "statsig-apollo-admin"') == ["Statsig-Apollo-Admin"]
    assert await names('displayName sw "Statsig-Zeus"') == ["Statsig-Zeus-Admin", "Statsig-Zeus-Viewer"]
    assert await names(f'members[value eq "{user}"]') == ["Statsig-Apollo-Admin"]
    assert await names("members pr") == ["Statsig-Apollo-Admin"]
    assert await names('not (displayName co "Admin") and displayName ew "viewer"') == [
        "Statsig-Apollo-Viewer",
        "Statsig-Zeus-Viewer",
    ]
    users = (await scim.get("/Users", params={"filter": 'groups[display eq "Statsig-Apollo-Admin"]'})).json()
    assert [resource["id"] for resource in users["Resources"]] == [user]
    assert (await scim.get("/Groups", params={"filter": "members.nonsense pr"})).json()[
        "scimType"
    ] == "invalidFilter"
    paged = (
        await scim.get("/Groups", params={"startIndex": 2, "count": 2, "attributes": "displayName"})
    ).json()
    assert (paged["totalResults"], paged["itemsPerPage"]) == (4, 2)
    assert set(paged["Resources"][0]) == {"schemas", "id", "displayName"}


async def test_an_organizations_token_never_sees_or_changes_another_organizations_groups(
    http: httpx.AsyncClient, services: Services, pool: asyncpg.Pool
) -> None:
    first, second = await new_tenant(pool), await new_tenant(pool)
    await make_catalog(services, first)
    await services.catalog.create(PROJECT, second.org.org_id, "Solo", ADMIN)
    await services.catalog.create(ROLE, second.org.org_id, "Member", ADMIN)
    theirs = (await http.get("/Groups", headers=first.headers)).json()["Resources"][0]
    mine = (await http.get("/Groups", headers=second.headers)).json()
    assert [group["displayName"] for group in mine["Resources"]] == ["Statsig-Solo-Member"]
    path = f"/Groups/{theirs['id']}"
    assert (await http.get(path, headers=second.headers)).status_code == 404
    user = (await http.post("/Users", json=okta_user("x@second.org"), headers=second.headers)).json()["id"]
    assert (await http.patch(path, json=patch(add(user)), headers=second.headers)).status_code == 404
    assert (
        await http.put(path, json={"displayName": theirs["displayName"]}, headers=second.headers)
    ).status_code == 404
    assert (await http.delete(path, headers=second.headers)).status_code == 404
    filtered = await http.get(
        "/Groups", params={"filter": f'displayName eq "{theirs["displayName"]}"'}, headers=second.headers
    )
    assert filtered.json()["totalResults"] == 0


async def test_archiving_a_project_removes_its_groups_and_revokes_access_as_events(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services, pool: asyncpg.Pool
) -> None:
    group = await find_group(scim, "Statsig-Zeus-Admin")
    user = await new_user(scim)
    await scim.patch(f"/Groups/{group['id']}", json=patch(add(user)))
    revoked = await services.catalog.archive(PROJECT, catalog.tenant.org.org_id, "zeus", ADMIN)
    assert revoked == 1
    assert (await scim.get(f"/Groups/{group['id']}")).status_code == 404
    remaining = (await scim.get("/Groups")).json()
    assert sorted(found["displayName"] for found in remaining["Resources"]) == [
        "Statsig-Apollo-Admin",
        "Statsig-Apollo-Viewer",
    ]
    assert "groups" not in (await scim.get(f"/Users/{user}")).json()
    assert (await group_events(pool, group["id"]))[-2:] == [
        ("GroupMemberRemoved", "archive", "admin:test"),
        ("GroupUnlinked", "archive", "admin:test"),
    ]
    patched = await scim.patch(f"/Groups/{group['id']}", json=patch(add(user)))
    assert patched.status_code == 404
    recreated, groups = await services.catalog.create(PROJECT, catalog.tenant.org.org_id, "Zeus", ADMIN)
    assert groups == 2, "an archived project's name may be used again"
    assert recreated != catalog.projects["Zeus"]


async def test_renaming_a_project_renames_its_groups(
    scim: httpx.AsyncClient, catalog: Catalog, services: Services
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Viewer")
    await services.catalog.rename(PROJECT, catalog.tenant.org.org_id, "Apollo", "Artemis", ADMIN)
    renamed = (await scim.get(f"/Groups/{group['id']}")).json()
    assert renamed["displayName"] == "Statsig-Artemis-Viewer"
    assert renamed["meta"]["version"] != group["meta"]["version"]
    await services.catalog.rename(
        ROLE, catalog.tenant.org.org_id, str(catalog.roles["Viewer"]), "Reader", ADMIN
    )
    assert (await scim.get(f"/Groups/{group['id']}")).json()["displayName"] == "Statsig-Artemis-Reader"


async def test_names_that_collide_are_refused(services: Services, tenant: Tenant) -> None:
    org_id = tenant.org.org_id
    await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    with pytest.raises(NameTaken, match="project of that name"):
        await services.catalog.create(PROJECT, org_id, "APOLLO", ADMIN)
    await services.catalog.create(PROJECT, org_id, "A-B", ADMIN)
    await services.catalog.create(ROLE, org_id, "C", ADMIN)
    await services.catalog.create(PROJECT, org_id, "A", ADMIN)
    with pytest.raises(NameTaken, match="existing group 'Statsig-A-B-C' of project 'A-B' and role 'C'"):
        await services.catalog.create(ROLE, org_id, "B-C", ADMIN)
    with pytest.raises(NameTaken, match="role of that name"):
        await services.catalog.create(ROLE, org_id, "c", ADMIN)


async def test_if_match_with_a_stale_group_version_is_412_and_changes_nothing(
    scim: httpx.AsyncClient, catalog: Catalog
) -> None:
    group = await find_group(scim, "Statsig-Apollo-Admin")
    first, second = await new_user(scim), await new_user(scim)
    seen = group["meta"]["version"]
    ok = await scim.patch(f"/Groups/{group['id']}", json=patch(add(first)), headers={"If-Match": seen})
    assert ok.status_code == 204
    assert ok.headers["etag"] != seen
    stale = await scim.patch(f"/Groups/{group['id']}", json=patch(add(second)), headers={"If-Match": seen})
    assert stale.status_code == 412
    assert (await scim.delete(f"/Groups/{group['id']}", headers={"If-Match": seen})).status_code == 412
    assert await member_ids(scim, group["id"]) == [first]
