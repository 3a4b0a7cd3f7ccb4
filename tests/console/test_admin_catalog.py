"""The console's Project × Role pages for the org admin, over the ASGI app: the matrix of groups (linked or
not, members), a group's members and history, and projects and roles created, renamed and archived, with a
refused name shown and nothing of it applied."""

from __future__ import annotations

import re
import uuid

import asyncpg
import httpx

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from tests.conftest import okta_user
from tests.console.admin_helpers import ADMIN
from tests.console.helpers import ConsoleOrg, console_org, csrf_of, sign_in
from tests.e2e.test_groups_api import add, patch, remove

CELL = re.compile(
    r'<a href="/console/groups/([0-9a-f-]{36})">([^<]+)</a><br>\s*'
    r'<span class="badge (linked|unlinked)">[a-z]+</span>\s*<span class="members">(\d+) members?</span>'
)
HISTORY_ROW = re.compile(
    r"<tr>\s*<td><time[^>]*>[^<]*</time></td>\s*<td>([^<]+)</td>\s*<td>(?:<a [^>]*>([^<]+)</a>)?</td>\s*"
    r"<td>([^<]+)</td>\s*<td>([^<]*)</td>"
)


def cells(page: str) -> dict[str, tuple[str, bool, int]]:
    """The matrix's cells: group name → (group id, linked, members)."""
    return {
        name: (group_id, linked == "linked", int(count))
        for group_id, name, linked, count in CELL.findall(page)
    }


def members_of(page: str) -> list[str]:
    """The userNames a group's page lists as members (its history links to users too)."""
    members = page.split('id="history-title"')[0]
    return re.findall(r'<td><a href="/console/users/[0-9a-f-]{36}">([^<]+)</a></td>', members)


async def scripted_catalog(services: Services, org: ConsoleOrg) -> dict[str, uuid.UUID]:
    org_id = org.tenant.org.org_id
    ids = {}
    for kind, names in ((PROJECT, ("Zeus", "Apollo")), (ROLE, ("Viewer", "Admin"))):
        for name in names:
            ids[name] = (await services.catalog.create(kind, org_id, name, ADMIN))[0]
    return ids


async def okta_user_id(client: httpx.AsyncClient, org: ConsoleOrg, user_name: str) -> str:
    created = await client.post("/scim/v2/Users", json=okta_user(user_name), headers=org.tenant.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_the_matrix_shows_each_pairs_group_linked_or_not_with_its_members(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    await scripted_catalog(services, org)
    ann, bob = [await okta_user_id(browser_like, org, f"{name}@acme.example") for name in ("ann", "bob")]
    groups = {
        row["display_name"]: str(row["group_id"])
        for row in await pool.fetch(
            "SELECT group_id, display_name FROM scim_groups WHERE org_id = $1", org.tenant.org.org_id
        )
    }
    # Okta links two groups by pushing their members.
    pushed = await browser_like.patch(
        f"/scim/v2/Groups/{groups['Statsig-Apollo-Admin']}",
        json=patch(add(ann, bob)),
        headers=org.tenant.headers,
    )
    assert pushed.status_code == 204
    pushed = await browser_like.patch(
        f"/scim/v2/Groups/{groups['Statsig-Zeus-Viewer']}", json=patch(add(bob)), headers=org.tenant.headers
    )
    assert pushed.status_code == 204

    await sign_in(browser_like, org, "admin")
    matrix = await browser_like.get("/console/matrix")
    assert matrix.status_code == 200
    assert cells(matrix.text) == {
        "Statsig-Apollo-Admin": (groups["Statsig-Apollo-Admin"], True, 2),
        "Statsig-Apollo-Viewer": (groups["Statsig-Apollo-Viewer"], False, 0),
        "Statsig-Zeus-Admin": (groups["Statsig-Zeus-Admin"], False, 0),
        "Statsig-Zeus-Viewer": (groups["Statsig-Zeus-Viewer"], True, 1),
    }
    rows = re.findall(r'<th scope="row">([^<]+)</th>', matrix.text)
    columns = re.findall(r'<th scope="col">([^<]+)</th>', matrix.text)
    assert (rows, columns) == (["Apollo", "Zeus"], ["Project", "Admin", "Viewer"])
    # Row by row, the cells follow the columns.
    in_page = CELL.findall(matrix.text)
    assert in_page == sorted(in_page, key=lambda cell: cell[1])

    removed = await browser_like.patch(
        f"/scim/v2/Groups/{groups['Statsig-Apollo-Admin']}",
        json=patch(remove(ann)),
        headers=org.tenant.headers,
    )
    assert removed.status_code == 204
    group = await browser_like.get(f"/console/groups/{groups['Statsig-Apollo-Admin']}")
    assert group.status_code == 200
    assert members_of(group.text) == ["bob@acme.example"]
    token = f"{org.tenant.token_id} (SCIM token)"  # the token has no label: its id, and what it is for
    history = HISTORY_ROW.findall(group.text)
    assert [(change, user, actor) for change, user, actor, _ in history] == [
        ("removed", "ann@acme.example", token),
        ("added", "bob@acme.example", token),
        ("added", "ann@acme.example", token),
        ("linked by the identity provider", "", token),
        ("group created", "", "admin:test"),
    ]
    assert history[0][3] == "pushed by the identity provider"

    paged = await browser_like.get(f"/console/groups/{groups['Statsig-Apollo-Admin']}/history")
    assert HISTORY_ROW.findall(paged.text) == history


async def test_a_groups_history_is_paged_newest_first(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    await services.catalog.create(PROJECT, org.tenant.org.org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org.tenant.org.org_id, "Admin", ADMIN)
    group_id = str(
        await pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", org.tenant.org.org_id)
    )
    users = [await okta_user_id(browser_like, org, f"u{index:02}@acme.example") for index in range(60)]
    for user in users:
        pushed = await browser_like.patch(
            f"/scim/v2/Groups/{group_id}", json=patch(add(user)), headers=org.tenant.headers
        )
        assert pushed.status_code == 204
    await sign_in(browser_like, org, "admin")

    page = await browser_like.get(f"/console/groups/{group_id}")
    recent = HISTORY_ROW.findall(page.text)
    assert [user for _, user, _, _ in recent] == [f"u{index:02}@acme.example" for index in range(59, 39, -1)]
    members_next = re.search(r'<a href="([^"]+)" rel="next">More members</a>', page.text)
    assert members_next is not None, "60 members: a second page of them"
    more = await browser_like.get(members_next.group(1).replace("&amp;", "&"))
    assert len(members_of(more.text)) == 10

    seen = []
    link: str | None = f"/console/groups/{group_id}/history"
    while link:
        history = await browser_like.get(link)
        seen += HISTORY_ROW.findall(history.text)
        found = re.search(r'<a href="([^"]+)" rel="next">Older history</a>', history.text)
        link = found.group(1).replace("&amp;", "&") if found else None
    assert [user for _, user, _, _ in seen[:60]] == [
        f"u{index:02}@acme.example" for index in range(59, -1, -1)
    ]
    assert [change for change, _, _, _ in seen[60:]] == ["linked by the identity provider", "group created"]


async def test_archiving_asks_first_saying_what_okta_loses_then_archives(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    ids = await scripted_catalog(services, org)
    ann, bob = [await okta_user_id(browser_like, org, f"{name}@acme.example") for name in ("ann", "bob")]
    apollo_admin = await pool.fetchval(
        "SELECT group_id FROM scim_groups WHERE org_id = $1 AND display_name = 'Statsig-Apollo-Admin'",
        org.tenant.org.org_id,
    )
    pushed = await browser_like.patch(
        f"/scim/v2/Groups/{apollo_admin}", json=patch(add(ann, bob)), headers=org.tenant.headers
    )
    assert pushed.status_code == 204
    csrf = csrf_of(await sign_in(browser_like, org, "admin", label="Dana"))

    confirm = await browser_like.get(f"/console/catalog/projects/{ids['Apollo']}/archive")
    assert confirm.status_code == 200
    assert "Its 2 groups leave SCIM at once: 1 of them is linked in Okta" in confirm.text
    assert "2 memberships are revoked at once" in confirm.text
    assert (
        await pool.fetchval("SELECT archived FROM catalog_projects WHERE project_id = $1", ids["Apollo"])
        is False
    )

    archived = await browser_like.post(
        f"/console/catalog/projects/{ids['Apollo']}/archive", data={"csrf_token": csrf}
    )
    assert archived.status_code == 200
    assert "2 memberships were revoked" in archived.text
    actor = await pool.fetchval(
        "SELECT actor FROM events WHERE stream_id = $1 AND type = 'ProjectArchived'", ids["Apollo"]
    )
    assert actor == "console:Dana"
    gone = await browser_like.get(f"/scim/v2/Groups/{apollo_admin}", headers=org.tenant.headers)
    assert gone.status_code == 404
    assert set(cells((await browser_like.get("/console/matrix")).text)) == {
        "Statsig-Zeus-Admin",
        "Statsig-Zeus-Viewer",
    }
    assert (await browser_like.get(f"/console/groups/{apollo_admin}")).status_code == 404
    assert "Apollo" not in (await browser_like.get("/console/catalog")).text
    assert "archived" in (await browser_like.get("/console/catalog?archived=1")).text


async def test_a_taken_or_too_long_name_is_shown_on_the_page_and_changes_nothing(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    ids = await scripted_catalog(services, org)
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))

    async def catalog_state() -> list[tuple[str, bool]]:
        rows = await pool.fetch(
            "SELECT name, archived FROM catalog_projects WHERE org_id = $1 UNION ALL "
            "SELECT display_name, linked FROM scim_groups WHERE org_id = $1 ORDER BY 1",
            org.tenant.org.org_id,
        )
        return [(row[0], row[1]) for row in rows]

    before = await catalog_state()
    taken = await browser_like.post("/console/catalog/projects", data={"csrf_token": csrf, "name": "apollo"})
    assert taken.status_code == 409
    assert 'class="problem" role="alert"' in taken.text
    assert 'value="apollo"' in taken.text, "what was typed stays in the field"
    too_long = await browser_like.post("/console/catalog/roles", data={"csrf_token": csrf, "name": "x" * 201})
    assert too_long.status_code == 400
    assert "at most 200 characters" in too_long.text

    form = await browser_like.get(f"/console/catalog/projects/{ids['Zeus']}/rename")
    assert form.status_code == 200
    assert 'value="Zeus"' in form.text
    renamed_onto = await browser_like.post(
        f"/console/catalog/projects/{ids['Zeus']}/rename", data={"csrf_token": csrf, "name": "APOLLO"}
    )
    assert renamed_onto.status_code == 409
    assert 'class="problem" role="alert"' in renamed_onto.text
    assert await catalog_state() == before

    renamed = await browser_like.post(
        f"/console/catalog/projects/{ids['Zeus']}/rename", data={"csrf_token": csrf, "name": "Hermes"}
    )
    assert renamed.status_code == 200
    assert "is now “Hermes”" in renamed.text
    assert set(cells((await browser_like.get("/console/matrix")).text)) == {
        "Statsig-Apollo-Admin",
        "Statsig-Apollo-Viewer",
        "Statsig-Hermes-Admin",
        "Statsig-Hermes-Viewer",
    }

    created = await browser_like.post("/console/catalog/roles", data={"csrf_token": csrf, "name": "Auditor"})
    assert created.status_code == 201
    assert "with 2 new groups" in created.text


async def test_another_organizations_group_and_project_are_not_found(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org, other = await console_org(pool), await console_org(pool)
    ids = await scripted_catalog(services, other)
    group_id = await pool.fetchval(
        "SELECT group_id FROM scim_groups WHERE org_id = $1 LIMIT 1", other.tenant.org.org_id
    )
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))
    assert (await browser_like.get(f"/console/groups/{group_id}")).status_code == 404
    assert (await browser_like.get(f"/console/catalog/projects/{ids['Apollo']}/archive")).status_code == 404
    refused = await browser_like.post(
        f"/console/catalog/projects/{ids['Apollo']}/archive", data={"csrf_token": csrf}
    )
    assert refused.status_code == 404
    assert (
        await pool.fetchval("SELECT archived FROM catalog_projects WHERE project_id = $1", ids["Apollo"])
        is False
    )


async def test_projects_are_listed_a_page_at_a_time_even_after_a_creation(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    names = [f"Project {index:02}" for index in range(55)]
    for name in names[1:]:
        await services.catalog.create(PROJECT, org.tenant.org.org_id, name, ADMIN)
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))
    created = await browser_like.post(
        "/console/catalog/projects", data={"csrf_token": csrf, "name": names[0]}
    )
    assert created.status_code == 201

    def listed(page: str) -> list[str]:
        return re.findall(r"<tr>\s*<td>(Project \d\d)</td>", page)

    more = re.search(r'<a href="([^"]+)" rel="next">More projects</a>', created.text)
    assert more is not None
    following = await browser_like.get(more.group(1).replace("&amp;", "&"))
    assert following.status_code == 200
    assert listed(created.text) + listed(following.text) == names
    assert 'rel="next">More projects' not in following.text
