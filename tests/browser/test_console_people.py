"""The console is made for people: readable on a phone, usable with the keyboard alone."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.browser.test_console_setup import new_link
from tests.console.helpers import console_org


async def test_on_a_phone_no_page_scrolls_sideways(
    browser: Browser, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    context = await browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    try:
        phone = await context.new_page()
        await phone.goto(await new_link(console_server, org.admin, org.org_id, "setup", "Dana"))
        await phone.get_by_role("button", name="Sign in").click()
        await expect(phone.get_by_role("heading", name="Connect your identity provider")).to_be_visible()
        # Wide tables scroll inside their own box; the page itself fits the screen.
        overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        await assert_accessible(phone)
    finally:
        await context.close()


async def test_the_keyboard_reaches_the_content_and_every_control(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    await page.goto(await new_link(console_server, org.admin, org.org_id, "setup", "Dana"))
    # Tab to the sign-in button and press Enter: no mouse.
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent.trim()") == "Sign in":
            break
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Connect your identity provider")).to_be_visible()

    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    await page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    # The label field and the button that generates a token are reachable in order.
    reached = []
    for _ in range(30):
        await page.keyboard.press("Tab")
        reached.append(
            await page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
        )
        if reached[-1] == "Generate a SCIM token":
            break
    assert "token-label" in reached
    assert reached[-1] == "Generate a SCIM token"
