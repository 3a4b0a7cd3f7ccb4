"""The management API's routes over the ASGI app: the catalog (projects and roles), groups and their members,
grants made in the app, and users (listed, searched, shown, invited, removed, restored). Each goes through
the services the CLI uses: the same rules refuse, the same events are recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.services import tenancy
from tests.conftest import Tenant, new_tenant, okta_user

BASE = "http://scim.test"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class Admin:
    """An organization, its SCIM token (Okta), and its admin token's client, at the org's API root."""

    tenant: Tenant
    token_id: uuid.UUID
    client: httpx.AsyncClient

    @property
    def okta(self) -> dict[str, str]:
        return self.tenant.headers

    async def all(self, path: str, **params: str) -> list[dict[str, Any]]:
        """Every item of a listing, following its cursor a few items at a time."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.client.get(
                path, params={**params, "limit": "2", **({"cursor": cursor} if cursor else {})}
            )
            assert page.status_code == 200, page.text
            items += page.json()["data"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return items


@pytest.fixture
async def admin(asgi_app: object, pool: asyncpg.Pool) -> AsyncIterator[Admin]:
    tenant = await new_tenant(pool)
    async with pool.acquire() as connection:
        token_id, token = await tenancy.issue_token(connection, tenant.org.org_id, "admin")
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url=f"{BASE}/api/v1/orgs/{tenant.org.org_id}",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield Admin(tenant, token_id, client)


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    return message


async def events_of(pool: asyncpg.Pool, org_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT type, actor FROM events WHERE org_id = $1 ORDER BY tx, position", org_id)
    return [(row["type"], row["actor"]) for row in rows]


async def test_projects_and_roles_are_created_renamed_and_archived_as_the_cli_does(
    admin: Admin, pool: asyncpg.Pool
) -> None:
    client = admin.client
    apollo = await client.post("/projects", json={"name": "Apollo"})
    assert apollo.status_code == 201
    assert apollo.json()["groups_created"] == 0, "no role yet"
    assert (await client.post("/projects", json={"name": "Zeus"})).status_code == 201
    viewer = await client.post("/roles", json={"name": "Viewer"})
    assert viewer.json()["groups_created"] == 2, "one group per live project"
    assert "already" in error_of(await client.post("/projects", json={"name": "apollo"}), 409)
    assert [project["name"] for project in await admin.all("/projects")] == ["Apollo", "Zeus"]

    renamed = await client.patch("/projects/apollo", json={"name": "Artemis"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Artemis"
    assert renamed.json()["id"] == apollo.json()["id"]
    names = [group["display_name"] for group in await admin.all("/groups")]
    assert len(names) == 2
    assert sum("Artemis" in name for name in names) == 1, names
    assert not [name for name in names if "Apollo" in name], "the groups' names follow the rename"

    archived = await client.post(f"/projects/{apollo.json()['id']}/archive")
    assert archived.status_code == 200
    assert archived.json() == {"id": apollo.json()["id"], "archived": True, "memberships_revoked": 0}
    assert [project["name"] for project in await admin.all("/projects")] == ["Zeus"]
    everything = await admin.all("/projects", archived="true")
    assert [(project["name"], project["archived"]) for project in everything] == [
        ("Artemis", True),
        ("Zeus", False),
    ]
    assert len(await admin.all("/groups")) == 1, "the archived project's group left SCIM"
    assert "No live project" in error_of(await client.patch("/projects/Artemis", json={"name": "X"}), 404)
    assert error_of(await client.get("/projects", params={"archived": "maybe"}), 400)

    actor = f"token:{admin.token_id}"
    recorded = [event for event in await events_of(pool, admin.tenant.org.org_id) if event[1] == actor]
    types = [event_type for event_type, _ in recorded]
    assert types[:2] == ["ProjectCreated", "ProjectCreated"], types
    assert {"RoleCreated", "GroupCreated", "ProjectRenamed", "ProjectArchived"} <= set(types)


async def test_an_invited_user_is_in_scim_for_okta_to_import_and_match(
    admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    invited = await admin.client.post(
        "/users",
        json={
            "userName": "ann@acme.example",
            "email": "ann@acme.example",
            "givenName": "Ann",
            "familyName": "Lee",
        },
    )
    assert invited.status_code == 201, invited.text
    user = invited.json()["user"]
    assert (user["user_name"], user["status"], user["groups"]) == ("ann@acme.example", "active", 0)
    assert invited.json()["profile"]["name"] == {"givenName": "Ann", "familyName": "Lee"}
    # An invitation creates the user's stream as Okta's POST does: with a data key, nothing personal stored.
    stored = await pool.fetch("SELECT payload::text FROM events WHERE stream_id = $1::uuid", user["id"])
    assert stored
    assert all("ann@acme" not in row[0] and "Lee" not in row[0] for row in stored)
    assert (
        await pool.fetchval("SELECT count(*) FROM personal_data_keys WHERE user_id = $1::uuid", user["id"])
        == 1
    )
    # Okta's import: a filter by userName finds the user the app invited.
    imported = await http.get(
        "/Users", params={"filter": 'userName eq "ANN@acme.example"'}, headers=admin.okta
    )
    assert [resource["id"] for resource in imported.json()["Resources"]] == [user["id"]]
    assert imported.json()["Resources"][0]["active"] is True
    # Okta then manages it: its profile push reaches the same user.
    pushed = await http.put(f"/Users/{user['id']}", json=okta_user("ann@acme.example"), headers=admin.okta)
    assert pushed.status_code == 200
    assert "already exists" in error_of(
        await admin.client.post("/users", json={"userName": "Ann@Acme.example"}), 409
    )
    assert error_of(await admin.client.post("/users", json={"email": "x@y.z"}), 422)
    assert error_of(await admin.client.post("/users", json={"userName": "x", "email": 3}), 422)


async def test_users_are_listed_searched_and_shown_with_their_groups(admin: Admin) -> None:
    client = admin.client
    for user_name, given, family in (
        ("ada@acme.example", "Ada", "Lovelace"),
        ("alan@acme.example", "Alan", "Turing"),
        ("grace@acme.example", "Grace", "Hopper"),
    ):
        created = await client.post(
            "/users", json={"userName": user_name, "givenName": given, "familyName": family}
        )
        assert created.status_code == 201
    listed = await admin.all("/users")
    assert [user["user_name"] for user in listed] == [
        "ada@acme.example",
        "alan@acme.example",
        "grace@acme.example",
    ]
    assert [user["user_name"] for user in await admin.all("/users", user_name="A")] == [
        "ada@acme.example",
        "alan@acme.example",
    ]
    assert [user["user_name"] for user in await admin.all("/users", name="hop")] == ["grace@acme.example"]
    assert await admin.all("/users", name="nobody") == []

    removed = await client.delete("/users/alan@acme.example")
    assert removed.status_code == 200
    assert removed.json()["user"]["status"] == "removed"
    assert removed.json()["user"]["removal"]["cause"] == "admin"
    assert removed.json()["user"]["removal"]["by"] == f"token:{admin.token_id}"
    assert [user["user_name"] for user in await admin.all("/users", status="removed")] == [
        "alan@acme.example"
    ]
    assert len(await admin.all("/users", status="active")) == 2
    assert "already removed" in error_of(await client.delete("/users/alan@acme.example"), 400)
    assert "nothing to restore" in error_of(await client.post("/users/ada@acme.example/restore"), 400)
    restored = await client.post(f"/users/{removed.json()['user']['id']}/restore")
    assert restored.status_code == 200
    assert restored.json()["user"]["status"] == "active"
    assert error_of(await client.get("/users", params={"status": "gone"}), 400)
    assert "No user 'nobody'" in error_of(await client.get("/users/nobody"), 404)

    await client.post("/projects", json={"name": "Apollo"})
    await client.post("/roles", json={"name": "Viewer"})
    [group] = await admin.all("/groups")
    assert (
        await client.post(f"/groups/{group['id']}/members", json={"user": "ada@acme.example"})
    ).status_code == 201
    shown = await client.get("/users/ADA@acme.example")
    assert shown.status_code == 200
    assert [(held["project"], held["role"]) for held in shown.json()["groups"]] == [("Apollo", "Viewer")]
    assert shown.json()["user"]["groups"] == 1


async def test_app_grants_change_unlinked_groups_and_okta_owns_linked_ones(
    admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    client = admin.client
    await client.post("/projects", json={"name": "Apollo"})
    await client.post("/roles", json={"name": "Viewer"})
    [group] = await admin.all("/groups")
    assert (group["linked"], group["members"]) == (False, 0)
    ann = (await client.post("/users", json={"userName": "ann@acme.example"})).json()["user"]["id"]
    members = f"/groups/{group['id']}/members"

    added = await client.post(members, json={"user": ann})
    assert added.status_code == 201
    assert added.json() == {"group_id": group["id"], "user_id": ann, "member": True, "changed": True}
    again = await client.post(members, json={"user": "ann@acme.example"})
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert [member["user_id"] for member in await admin.all(members)] == [ann]
    assert (await admin.all("/groups"))[0]["members"] == 1
    seen_by_okta = await http.get(f"/Groups/{group['id']}", headers=admin.okta)
    assert [member["value"] for member in seen_by_okta.json()["members"]] == [ann]
    left = await client.delete(f"{members}/{ann}")
    assert left.json() == {"group_id": group["id"], "user_id": ann, "member": False, "changed": True}
    assert await admin.all(members) == []
    causes = await pool.fetch(
        "SELECT type, payload->>'cause' AS cause FROM events WHERE org_id = $1 AND stream_id = $2 "
        "AND type IN ('GroupMemberAdded', 'GroupMemberRemoved') ORDER BY version",
        admin.tenant.org.org_id,
        uuid.UUID(ann),
    )
    assert [(row["type"], row["cause"]) for row in causes] == [
        ("GroupMemberAdded", "app"),
        ("GroupMemberRemoved", "app"),
    ]

    assert "No user" in error_of(await client.post(members, json={"user": "nobody@acme.example"}), 404)
    assert error_of(await client.post(f"/groups/{uuid.uuid4()}/members", json={"user": ann}), 404)
    assert error_of(await client.post("/groups/not-an-id/members", json={"user": ann}), 404)

    # Okta links the group with its first push: from then on, its membership is Okta's.
    push = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": []}]}
    assert (await http.patch(f"/Groups/{group['id']}", json=push, headers=admin.okta)).status_code == 204
    assert (await admin.all("/groups"))[0]["linked"] is True
    refused = error_of(await client.post(members, json={"user": ann}), 409)
    assert "linked to the identity provider" in refused
    assert "unlink the group in Okta" in refused
    assert "linked to the identity provider" in error_of(await client.delete(f"{members}/{ann}"), 409)
    assert await admin.all(members) == []


async def test_an_inactive_user_cannot_be_granted_access_in_the_app(
    admin: Admin, http: httpx.AsyncClient
) -> None:
    client = admin.client
    await client.post("/projects", json={"name": "Apollo"})
    await client.post("/roles", json={"name": "Viewer"})
    [group] = await admin.all("/groups")
    bob = (await client.post("/users", json={"userName": "bob@acme.example"})).json()["user"]["id"]
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert (await http.patch(f"/Users/{bob}", json=deactivate, headers=admin.okta)).status_code == 200
    refused = await client.post(f"/groups/{group['id']}/members", json={"user": bob})
    assert "cannot be added to a group" in error_of(refused, 400)


async def test_an_invitation_retried_with_its_key_records_one_user(admin: Admin, pool: asyncpg.Pool) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await admin.client.post("/users", json={"userName": "once@acme.example"}, headers=key)
    again = await admin.client.post("/users", json={"userName": "once@acme.example"}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    count = await pool.fetchval(
        "SELECT count(*) FROM scim_users WHERE org_id = $1 AND user_name = 'once@acme.example'",
        admin.tenant.org.org_id,
    )
    assert count == 1


async def test_a_nul_character_in_a_path_or_a_search_is_refused_before_the_database(admin: Admin) -> None:
    assert error_of(await admin.client.get("/users/a%00b"), 404)
    assert error_of(await admin.client.patch("/projects/a%00b", json={"name": "x"}), 404)
    assert "NUL" in error_of(await admin.client.get("/users", params={"name": "a\x00b"}), 400)
    assert "NUL" in error_of(await admin.client.post("/projects", json={"name": "a\u0000b"}), 400)
    org = str(admin.client.base_url).rsplit("/", 1)[-1]
    outside = await admin.client.get(f"{BASE}/api/v1/orgs/{org}%00/users")
    assert error_of(outside, 404)


async def test_a_grant_racing_okta_linking_the_group_never_lands_after_the_link(
    admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Okta's first push links a group while the app grants in it, at once, round after round: a grant either
    lands before the link (and Okta's push then decides the membership) or is refused, never recorded after."""
    client = admin.client
    await client.post("/projects", json={"name": "Apollo"})
    ann = (await client.post("/users", json={"userName": "ann@acme.example"})).json()["user"]["id"]
    push = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": []}]}
    outcomes = set()
    for round_ in range(12):
        created = await client.post("/roles", json={"name": f"Role {round_}"})
        assert created.status_code == 201
        [group] = [group for group in await admin.all("/groups") if not group["linked"]]
        linked, granted = await asyncio.gather(
            http.patch(f"/Groups/{group['id']}", json=push, headers=admin.okta),
            client.post(f"/groups/{group['id']}/members", json={"user": ann}),
        )
        assert linked.status_code == 204
        assert granted.status_code in (201, 409), granted.text
        outcomes.add(granted.status_code)
        order = await pool.fetch(
            "SELECT type, payload->>'cause' AS cause FROM events WHERE org_id = $1 "
            "AND (stream_id = $2 OR (stream_id = $3 AND payload->>'group_id' = $2::text)) ORDER BY tx, position",
            admin.tenant.org.org_id,
            uuid.UUID(group["id"]),
            uuid.UUID(ann),
        )
        types = [(row["type"], row["cause"]) for row in order]
        link = types.index(("GroupLinked", None))
        assert ("GroupMemberAdded", "app") not in types[link:], types
        if granted.status_code == 201:
            # Before the link, then removed by Okta's push, which replaced the membership with none.
            assert types[link:].count(("GroupMemberRemoved", "push")) == 1, types
    assert 409 in outcomes, "the race was run: at least one grant came after a link"
