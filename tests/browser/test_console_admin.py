"""The org admin in a browser: removes a user after reading what Okta will see, and Okta then sees them
inactive; archives a project after reading what it takes away. Every page on the way passes axe-core."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
from playwright.async_api import Browser, Page, expect

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from reactors.membership import RemovalDeactivates
from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.browser.test_console_setup import new_link
from tests.conftest import okta_user
from tests.console.admin_helpers import ADMIN, admin_things
from tests.console.helpers import console_org
from tests.e2e.test_app_side_removal import react
from tests.e2e.test_groups_api import add, patch


async def test_an_admin_removes_a_user_and_okta_sees_them_inactive(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    async with httpx.AsyncClient(base_url=console_server.root, headers=org.tenant.headers) as okta:
        created = await okta.post("/scim/v2/Users", json=okta_user("grace@acme.example"))
        user_id = created.json()["id"]

        await page.goto(await new_link(console_server, org.admin, org.org_id, "admin", "Dana"))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
        await assert_accessible(page)
        await page.get_by_label("userName starts with").fill("grace")
        await page.get_by_role("button", name="Search").click()
        await page.get_by_role("link", name="grace@acme.example").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("grace@acme.example")
        await assert_accessible(page)

        await page.get_by_role("link", name="Remove from the organization…").click()
        consequences = page.get_by_role("region", name="What will happen")
        await expect(consequences).to_contain_text("active: false")
        await expect(consequences).to_contain_text("unassigns them")
        await assert_accessible(page)
        await page.get_by_role("button", name="Remove from the organization").click()
        await expect(page.get_by_role("status")).to_contain_text("Removed from the organization")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("removed")
        await assert_accessible(page)

        # The reactor's decision, as the runner makes it (the test session runs none).
        await react(services, pool, RemovalDeactivates, user_id, "UserRemovedFromOrganization")
        seen = await okta.get(f"/scim/v2/Users/{user_id}")
    assert seen.json()["active"] is False
    actor = await pool.fetchval(
        "SELECT actor FROM events WHERE org_id = $1 AND stream_id = $2 AND type = 'UserRemovedFromOrganization'",
        org.tenant.org.org_id,
        uuid.UUID(user_id),
    )
    assert actor == "console:Dana"


async def test_an_admin_archives_a_project_after_reading_what_it_takes_away(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    org_id = org.tenant.org.org_id
    apollo, _ = await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    group_id = await pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", org_id)
    async with httpx.AsyncClient(base_url=console_server.root, headers=org.tenant.headers) as okta:
        ann = (await okta.post("/scim/v2/Users", json=okta_user("ann@acme.example"))).json()["id"]
        assert (await okta.patch(f"/scim/v2/Groups/{group_id}", json=patch(add(ann)))).status_code == 204

        await page.goto(await new_link(console_server, org.admin, org.org_id, "admin", "Dana"))
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("link", name="Access matrix").click()
        await expect(page.get_by_role("link", name="Statsig-Apollo-Admin")).to_be_visible()
        await assert_accessible(page)
        await page.get_by_role("link", name="Statsig-Apollo-Admin").click()
        await expect(page.get_by_role("heading", name="History, newest first")).to_be_visible()
        await assert_accessible(page)

        await page.get_by_role("link", name="Projects & roles").click()
        await assert_accessible(page)
        await page.get_by_role("link", name="Archive… Apollo").click()
        consequences = page.get_by_role("region", name="What will happen")
        await expect(consequences).to_contain_text("Its group leaves SCIM at once: it is linked in Okta")
        await expect(consequences).to_contain_text("1 membership is revoked at once")
        await assert_accessible(page)
        await page.get_by_role("button", name="Archive the project").click()
        await expect(page.get_by_role("status")).to_contain_text("is archived")
        assert (await okta.get(f"/scim/v2/Groups/{group_id}")).status_code == 404
    assert await pool.fetchval("SELECT archived FROM catalog_projects WHERE project_id = $1", apollo)


async def test_on_a_phone_no_admin_page_scrolls_sideways(
    browser: Browser, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    owned = await admin_things(pool, org.tenant.org.org_id)
    context = await browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    try:
        phone = await context.new_page()
        await phone.goto(await new_link(console_server, org.admin, org.org_id, "admin", "Dana"))
        await phone.get_by_role("button", name="Sign in").click()
        for path in (
            "/console/users",
            "/console/erasure",
            f"/console/users/{owned.user_id}",
            f"/console/users/{owned.user_id}/remove",
            "/console/matrix",
            f"/console/groups/{owned.group_id}",
            "/console/catalog",
            f"/console/catalog/projects/{owned.project_id}/rename",
            "/console/webhooks",
            f"/console/webhooks/{owned.webhook_id}",
        ):
            answer = await phone.goto(f"{console_server.root}{path}")
            assert answer is not None, path
            assert answer.status == 200, path
            # Wide tables scroll inside their own box; the page itself fits the screen.
            overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, path
            await assert_accessible(phone)
    finally:
        await context.close()
