"""The console's users pages for the org admin, over the ASGI app: listed, searched and paged; removed and
restored with a confirmation, after which Okta sees the user as the confirmation said; invited."""

from __future__ import annotations

import re
import uuid

import asyncpg
import httpx

from app.services.container import Services
from app.services.users import Invitation
from reactors.membership import DeactivationRemovesFromOrganization, RemovalDeactivates
from tests.console.admin_helpers import ADMIN
from tests.console.helpers import ConsoleOrg, console_org, csrf_of, sign_in
from tests.e2e.test_app_side_removal import react
from tests.e2e.test_users_api import PATCH_OP

USER_LINK = re.compile(r'<td><a href="/console/users/([0-9a-f-]{36})">([^<]+)</a></td>')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


def listed(page: str) -> list[str]:
    """The userNames a users page lists, in its order."""
    return [name for _, name in USER_LINK.findall(page)]


def next_of(page: str) -> str | None:
    found = NEXT.search(page)
    return found.group(1).replace("&amp;", "&") if found else None


async def invite(services: Services, org: ConsoleOrg, user_name: str, given: str = "Ada") -> uuid.UUID:
    row = await services.users.invite(
        org.tenant.org.org_id,
        Invitation(user_name=user_name, given_name=given, family_name="Lovelace"),
        ADMIN,
    )
    return row.user_id


async def test_users_are_listed_a_page_at_a_time_searched_and_filtered_by_status(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    names = [f"user{index:03}@acme.example" for index in range(55)]
    for name in names:
        await invite(services, org, name, given="Grace" if name.startswith("user01") else "Ada")
    landing = await sign_in(browser_like, org, "admin")
    assert "<h1>Users</h1>" in landing, "an admin session lands on the users page"

    first = landing
    second_link = next_of(first)
    assert second_link is not None
    second = (await browser_like.get(second_link)).text
    assert listed(first) + listed(second) == names, "each user once, in provisioning order"
    assert next_of(second) is None
    assert 'class="badge active">active</span>' in first

    by_user_name = await browser_like.get("/console/users", params={"user_name": "USER00"})
    assert listed(by_user_name.text) == names[:10], "userName starts with, ignoring case"
    by_name = await browser_like.get("/console/users", params={"name": "grac"})
    assert listed(by_name.text) == names[10:20], "name contains, ignoring case"

    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    user_id = await pool.fetchval(
        "SELECT user_id FROM scim_users WHERE org_id = $1 AND user_name = $2", org.tenant.org.org_id, names[3]
    )
    okta = await browser_like.patch(f"/scim/v2/Users/{user_id}", json=deactivate, headers=org.tenant.headers)
    assert okta.status_code in (200, 204), okta.text
    inactive = await browser_like.get("/console/users", params={"status": "inactive"})
    assert listed(inactive.text) == [names[3]]
    assert 'class="badge inactive">inactive</span>' in inactive.text
    assert listed((await browser_like.get("/console/users", params={"status": "removed"})).text) == []

    forged = await browser_like.get("/console/users", params={"cursor": "not-a-cursor"})
    assert forged.status_code == 400


async def test_removing_a_user_says_what_okta_will_see_and_okta_then_sees_them_inactive(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    user_id = await invite(services, org, "grace@acme.example")
    page = await sign_in(browser_like, org, "admin", label="Dana from IT")
    csrf = csrf_of(page)

    shown = await browser_like.get(f"/console/users/{user_id}")
    assert shown.status_code == 200
    assert "grace@acme.example" in shown.text
    assert f'href="/console/users/{user_id}/remove"' in shown.text

    confirm = await browser_like.get(f"/console/users/{user_id}/remove")
    assert confirm.status_code == 200
    assert "active: false" in confirm.text
    assert "Okta" in confirm.text
    assert "unassigns" in confirm.text
    assert "a restore here, or an explicit reactivation in Okta" in confirm.text
    assert f'action="/console/users/{user_id}/remove"' in confirm.text

    forged = await browser_like.post(f"/console/users/{user_id}/remove", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert await removals(pool, user_id) == [], "a form without the session's token does nothing"

    removed = await browser_like.post(f"/console/users/{user_id}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 200
    assert 'class="badge removed">removed</span>' in removed.text
    assert "Restore" in removed.text
    [(actor, request_id)] = await removals(pool, user_id)
    assert actor == "console:Dana from IT"
    assert request_id

    # The reactor's decision, as the runner makes it (the test session runs none).
    await react(services, pool, RemovalDeactivates, str(user_id), "UserRemovedFromOrganization")
    okta = await browser_like.get(f"/scim/v2/Users/{user_id}", headers=org.tenant.headers)
    assert okta.status_code == 200
    assert okta.json()["active"] is False

    again = await browser_like.post(f"/console/users/{user_id}/remove", data={"csrf_token": csrf})
    assert again.status_code == 400
    assert "already removed" in again.text

    confirm_restore = await browser_like.get(f"/console/users/{user_id}/restore")
    assert "active: true" in confirm_restore.text
    restored = await browser_like.post(f"/console/users/{user_id}/restore", data={"csrf_token": csrf})
    assert restored.status_code == 200
    assert 'class="badge active">active</span>' in restored.text
    okta = await browser_like.get(f"/scim/v2/Users/{user_id}", headers=org.tenant.headers)
    assert okta.json()["active"] is True
    joined = await pool.fetchval(
        "SELECT actor FROM events WHERE org_id = $1 AND stream_id = $2 AND type = 'UserJoinedOrganization'",
        org.tenant.org.org_id,
        user_id,
    )
    assert joined == "console:Dana from IT"


async def removals(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT actor, request_id FROM events WHERE stream_id = $1 AND type = 'UserRemovedFromOrganization' "
        "ORDER BY version",
        user_id,
    )
    return [(row["actor"], row["request_id"]) for row in rows]


async def test_a_user_is_invited_from_the_console_and_a_taken_user_name_is_refused_on_the_page(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    await invite(services, org, "taken@acme.example")
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))

    invited = await browser_like.post(
        "/console/users",
        data={"csrf_token": csrf, "user_name": "new@acme.example", "email": "new@acme.example"},
    )
    assert invited.status_code == 200
    assert "Invited" in invited.text
    found = await browser_like.get(
        "/scim/v2/Users", params={"filter": 'userName eq "new@acme.example"'}, headers=org.tenant.headers
    )
    assert found.json()["totalResults"] == 1

    taken = await browser_like.post(
        "/console/users", data={"csrf_token": csrf, "user_name": "TAKEN@acme.example"}
    )
    assert taken.status_code == 409
    assert "already exists" in taken.text
    count = await pool.fetchval("SELECT count(*) FROM scim_users WHERE org_id = $1", org.tenant.org.org_id)
    assert count == 2


async def test_another_organizations_user_is_not_found(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org, other = await console_org(pool), await console_org(pool)
    stranger = await invite(services, other, "stranger@other.example")
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))
    assert (await browser_like.get(f"/console/users/{stranger}")).status_code == 404
    refused = await browser_like.post(f"/console/users/{stranger}/remove", data={"csrf_token": csrf})
    assert refused.status_code == 404
    assert await removals(pool, stranger) == []


async def test_a_user_okta_deactivated_can_be_removed_to_make_it_hold_and_only_okta_brings_them_back(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    user_id = await invite(services, org, "left@acme.example")
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    okta = await browser_like.patch(f"/scim/v2/Users/{user_id}", json=deactivate, headers=org.tenant.headers)
    assert okta.status_code in (200, 204), okta.text
    await react(services, pool, DeactivationRemovesFromOrganization, str(user_id), "UserDeactivated")
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))

    shown = await browser_like.get(f"/console/users/{user_id}")
    assert "They left because of their identity provider" in shown.text
    assert f'href="/console/users/{user_id}/remove"' in shown.text
    assert f'href="/console/users/{user_id}/restore"' not in shown.text
    confirm = await browser_like.get(f"/console/users/{user_id}/remove")
    assert (
        "They already left the organization because their identity provider deactivated them" in confirm.text
    )

    removed = await browser_like.post(f"/console/users/{user_id}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 200
    assert [actor for actor, _ in await removals(pool, user_id)] == [
        "reactor:reactor.deactivation_removes_from_organization",
        "console:Dana",
    ]
    refused = await browser_like.post(f"/console/users/{user_id}/restore", data={"csrf_token": csrf})
    assert refused.status_code == 400
    assert "reactivate them in the identity provider instead" in refused.text
