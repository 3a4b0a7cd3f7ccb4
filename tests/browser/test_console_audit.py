"""The auditor in a browser: reads the access timeline of a group after a scripted Okta history, follows a
bar to the events that opened and closed it, and reads the review and the state at an instant."""

from __future__ import annotations

import asyncpg
import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.browser.test_console_setup import new_link
from tests.console.audit_story import okta_history
from tests.console.helpers import console_org


async def test_an_auditor_reads_the_timeline_and_follows_a_bar_to_its_events(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    async with httpx.AsyncClient(base_url=console_server.root) as okta_and_host_app:
        story = await okta_history(okta_and_host_app, pool, org)
    await page.goto(await new_link(console_server, org.admin, org.org_id, "audit", "Auditor Alex"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Seal chain")).to_be_visible()

    await page.get_by_role("link", name="Timeline").click()
    await expect(page.get_by_role("heading", name="Access timeline")).to_be_visible()
    await page.get_by_label("Group").select_option(
        label=f"{org_prefix(await group_names(page))}-Apollo-Admin"
    )
    await page.get_by_role("button", name="Draw").click()
    bars = page.locator("svg.timeline a.bar-link")
    await expect(bars).to_have_count(3)  # ann (removed since), eve, bob
    # The userName with markup in it is a name in the chart, not a script on the page.
    await expect(page.locator("svg.timeline .row-label").filter(has_text="<script>")).to_have_count(1)
    await assert_accessible(page)

    ann = bars.filter(has=page.locator("rect.granted"))
    await expect(ann).to_have_count(1)
    await ann.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="History")).to_be_visible()
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("added to group")
    await expect(rows.nth(1)).to_contain_text("removed from group")
    assert page.url.split("#")[1].startswith("event-")
    assert story.ann in page.url
    await assert_accessible(page)

    await page.get_by_role("link", name="Access review").click()
    await expect(page.locator("tbody tr")).to_have_count(4)
    await assert_accessible(page)
    await page.get_by_role("link", name="As of", exact=True).click()
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_role("heading", name="3 users", exact=False)).to_be_visible()
    await assert_accessible(page)


async def group_names(page: Page) -> list[str]:
    return await page.locator("#field-group option").all_inner_texts()


def org_prefix(names: list[str]) -> str:
    return next(name for name in names if name.endswith("-Apollo-Admin")).removesuffix("-Apollo-Admin")
