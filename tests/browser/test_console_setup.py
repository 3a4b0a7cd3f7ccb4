"""The customer's IT admin in a browser: follows the host app's link, signs in, generates a SCIM token,
copies it into "Okta" (here: a SCIM request with it), and finds Okta's call on the page."""

from __future__ import annotations

import asyncpg
import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.console.helpers import console_org


async def new_link(server: ConsoleServer, admin: dict[str, str], org_id: str, intent: str, label: str) -> str:
    async with httpx.AsyncClient(base_url=server.root) as host_app:
        answer = await host_app.post(
            f"/api/v1/orgs/{org_id}/portal-links", json={"intent": intent, "label": label}, headers=admin
        )
    assert answer.status_code == 201, answer.text
    url: str = answer.json()["url"]
    assert url.startswith(server.root)
    return url


async def test_an_it_admin_signs_in_generates_a_token_and_okta_can_use_it(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    link = await new_link(console_server, org.admin, org.org_id, "setup", "Dana from IT")

    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Sign in to")
    await assert_accessible(page)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Connect your identity provider")).to_be_visible()
    await expect(page.get_by_text(f"{console_server.root}/scim/v2")).to_be_visible()
    await assert_accessible(page)

    await page.get_by_label("Label").fill("Okta production")
    await page.get_by_role("button", name="Generate a SCIM token").click()
    token = await page.locator("#new-token").input_value()
    assert token.startswith("scl_")
    await assert_accessible(page)

    async with httpx.AsyncClient(base_url=console_server.root) as okta:
        called = await okta.get(
            "/scim/v2/Users?startIndex=1&count=2", headers={"Authorization": f"Bearer {token}"}
        )
    assert called.status_code == 200

    await page.goto(f"{console_server.root}/console/setup")
    await expect(page.locator("#new-token")).to_have_count(0)
    await expect(page.get_by_text("Your identity provider last called")).to_be_visible()
    # Shown in the viewer's zone (the context's is Europe/Paris), with UTC on hover.
    shown = page.locator("section", has_text="Connection status").locator("time").first
    assert "UTC" in (await shown.get_attribute("title") or "")
    assert "UTC" not in await shown.inner_text()


async def test_a_link_used_twice_or_expired_shows_what_to_do(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    link = await new_link(console_server, org.admin, org.org_id, "admin", "Sam")
    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    await page.context.clear_cookies()
    await page.goto(link)
    await expect(page.get_by_role("alert")).to_contain_text("already been used")
    await assert_accessible(page)

    expired = await new_link(console_server, org.admin, org.org_id, "admin", "Sam")
    await pool.execute(
        "UPDATE console_links SET expires_at = now() - interval '1 minute' WHERE org_id = $1 AND used_at IS NULL",
        org.tenant.org.org_id,
    )
    await page.goto(expired)
    await expect(page.get_by_role("alert")).to_contain_text("expired")


async def test_a_forged_form_is_refused_and_changes_nothing(
    page: Page, console_server: ConsoleServer, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    await page.goto(await new_link(console_server, org.admin, org.org_id, "setup", "Dana"))
    await page.get_by_role("button", name="Sign in").click()
    # The form as an attacker's page would send it: right session cookie, wrong token.
    token_field = page.locator("form[action='/console/setup/tokens'] input[name=csrf_token]")
    await token_field.evaluate("input => { input.value = 'forged'; }")
    before = await pool.fetchval("SELECT count(*) FROM api_tokens WHERE org_id = $1", org.tenant.org.org_id)
    await page.get_by_label("Label").fill("Sneaky")
    await page.get_by_role("button", name="Generate a SCIM token").click()
    await expect(page.get_by_role("alert")).to_contain_text("nothing was done")
    after = await pool.fetchval("SELECT count(*) FROM api_tokens WHERE org_id = $1", org.tenant.org.org_id)
    assert after == before
