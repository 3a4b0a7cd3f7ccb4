"""Signing into the console by one-time links, its sessions, and the CSRF token every form carries, over the
ASGI app."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.console.helpers import ROOT, console_org, csrf_of, portal_link, sign_in
from tests.service import run_cli


async def test_a_link_shows_what_it_is_for_and_signs_in_once(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    url = await portal_link(browser_like, org, "setup", "Dana from IT")
    assert url.startswith(f"{ROOT}/console/sign-in/{org.org_id}/")

    shown = await browser_like.get(url)
    assert shown.status_code == 200
    assert "Dana from IT" in shown.text
    assert org.tenant.org.name in shown.text
    assert "scimledger_console" not in shown.headers.get("set-cookie", ""), "opening the link signs nobody in"

    signed_in = await browser_like.post(url)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console/setup"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/console" in cookie
    setup = await browser_like.get("/console/setup")
    assert setup.status_code == 200
    assert "Connect your identity provider" in setup.text

    browser_like.cookies.clear()
    again = await browser_like.post(url)
    assert again.status_code == 410
    assert "already been used" in again.text
    assert "scimledger_console" not in again.headers.get("set-cookie", "")
    assert (await browser_like.get(url)).status_code == 410


async def test_an_expired_or_unknown_link_is_refused_with_what_to_do(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    url = await portal_link(browser_like, org, "admin")
    await pool.execute(
        "UPDATE console_links SET expires_at = now() - interval '1 second' WHERE org_id = $1",
        org.tenant.org.org_id,
    )
    expired = await browser_like.post(url)
    assert expired.status_code == 410
    assert "expired" in expired.text
    assert "new link" in expired.text

    unknown = await browser_like.post(f"{ROOT}/console/sign-in/{org.org_id}/not-a-secret")
    assert unknown.status_code == 404
    assert "not valid" in unknown.text
    malformed = await browser_like.get(f"{ROOT}/console/sign-in/not-an-org/secret")
    assert malformed.status_code == 404


async def test_a_link_of_one_organization_signs_into_no_other(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org, other = await console_org(pool), await console_org(pool)
    url = await portal_link(browser_like, org, "setup")
    secret = url.rsplit("/", 1)[1]
    crossed = await browser_like.post(f"{ROOT}/console/sign-in/{other.org_id}/{secret}")
    assert crossed.status_code == 404
    # An admin token reaches its own organization only: another's is answered as absent.
    refused = await browser_like.post(
        f"{ROOT}/api/v1/orgs/{other.org_id}/portal-links",
        json={"intent": "admin", "label": "x"},
        headers=org.admin,
    )
    assert refused.status_code == 404
    await sign_in(browser_like, other, "setup")
    kept = await browser_like.delete(f"{ROOT}/api/v1/orgs/{other.org_id}/portal-sessions", headers=org.admin)
    assert kept.status_code == 404
    assert (await browser_like.get("/console/setup")).status_code == 200, (
        "the other organization's session lives"
    )


async def test_a_sign_in_posted_from_another_site_is_refused(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    url = await portal_link(browser_like, org, "setup")
    forged = await browser_like.post(url, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    cross_site = await browser_like.post(url, headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"})
    assert cross_site.status_code == 403
    assert (await browser_like.post(url, headers={"Origin": ROOT})).status_code == 303, (
        "the link is still usable"
    )


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "setup")

    def scim_tokens() -> str:
        return "SELECT count(*) FROM api_tokens WHERE org_id = $1 AND scope = 'scim'"

    before = await pool.fetchval(scim_tokens(), org.tenant.org.org_id)
    for token in (None, "forged", csrf_of(page)[:-1] + "0"):
        data = {"label": "Okta"} | ({"csrf_token": token} if token else {})
        refused = await browser_like.post("/console/setup/tokens", data=data)
        assert refused.status_code == 403
        assert "nothing was done" in refused.text
    assert await pool.fetchval(scim_tokens(), org.tenant.org.org_id) == before

    made = await browser_like.post(
        "/console/setup/tokens", data={"label": "Okta", "csrf_token": csrf_of(page)}
    )
    assert made.status_code == 201
    assert await pool.fetchval(scim_tokens(), org.tenant.org.org_id) == before + 1


async def test_a_generated_token_is_shown_once_and_works_over_scim(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "setup", "Dana")
    made = await browser_like.post(
        "/console/setup/tokens", data={"label": "Okta production", "csrf_token": csrf_of(page)}
    )
    token = made.text.split('data-token="', 1)[1].split('"', 1)[0]
    assert token.startswith("scl_")
    users = await browser_like.get(
        "/scim/v2/Users?startIndex=1&count=2", headers={"Authorization": f"Bearer {token}"}
    )
    assert users.status_code == 200
    assert token not in (await browser_like.get("/console/setup")).text, "shown once"
    created_by = await pool.fetchval(
        "SELECT created_by FROM api_tokens WHERE org_id = $1 AND label = 'Okta production'",
        org.tenant.org.org_id,
    )
    assert created_by == "console:Dana"


async def test_revoking_asks_first_and_only_reaches_the_organizations_scim_tokens(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org, other = await console_org(pool), await console_org(pool)
    page = await sign_in(browser_like, org, "setup")
    csrf = csrf_of(page)
    asked = await browser_like.get(f"/console/setup/tokens/{org.tenant.token_id}/revoke")
    assert asked.status_code == 200
    assert "refused" in asked.text
    assert (
        await pool.fetchval("SELECT revoked_at FROM api_tokens WHERE token_id = $1", org.tenant.token_id)
        is None
    )

    admin_token_id = await pool.fetchval(
        "SELECT token_id FROM api_tokens WHERE org_id = $1 AND scope = 'admin'", org.tenant.org.org_id
    )
    for token_id in (other.tenant.token_id, admin_token_id, uuid.uuid4(), "not-a-token"):
        missed = await browser_like.post(
            f"/console/setup/tokens/{token_id}/revoke", data={"csrf_token": csrf}
        )
        assert missed.status_code == 404
    assert (
        await pool.fetchval("SELECT revoked_at FROM api_tokens WHERE token_id = $1", other.tenant.token_id)
        is None
    )

    done = await browser_like.post(
        f"/console/setup/tokens/{org.tenant.token_id}/revoke", data={"csrf_token": csrf}
    )
    assert done.status_code == 200
    revoked_by = await pool.fetchval(
        "SELECT revoked_by FROM api_tokens WHERE token_id = $1", org.tenant.token_id
    )
    assert revoked_by == "console:Dana"


async def test_an_intent_opens_its_own_pages_only(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    await sign_in(browser_like, org, "audit")
    for path in ("/console/setup", "/console/setup/tokens"):
        refused = await browser_like.get(path) if path.endswith("setup") else await browser_like.post(path)
        assert refused.status_code == 403
        assert "opened for audit" in refused.text


async def test_sessions_end_when_idle_at_sign_out_and_when_revoked(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "setup")
    signed_out = await browser_like.post("/console/sign-out", data={"csrf_token": csrf_of(page)})
    assert signed_out.status_code == 200
    assert "signed out" in signed_out.text
    assert (await browser_like.get("/console/setup")).status_code == 401

    await sign_in(browser_like, org, "setup")
    await pool.execute(
        "UPDATE console_sessions SET last_seen_at = now() - interval '1 day' WHERE org_id = $1",
        org.tenant.org.org_id,
    )
    idle = await browser_like.get("/console/setup")
    assert idle.status_code == 401
    assert "sign-in link" in idle.text

    await sign_in(browser_like, org, "setup")
    revoked = await browser_like.delete(f"{ROOT}/api/v1/orgs/{org.org_id}/portal-sessions", headers=org.admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] == 2, "the idle session's end is made final too"
    assert (await browser_like.get("/console/setup")).status_code == 401


async def test_the_cli_prints_a_link_alone_on_its_last_line(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    printed = run_cli(cli_env, "console", "link", "--org", org.org_id, "--intent", "audit", "--label", "Ann")
    url = printed.stdout.strip().splitlines()[-1]
    assert url.startswith(f"http://127.0.0.1:8000/console/sign-in/{org.org_id}/")
    row = await pool.fetchrow(
        "SELECT intent, label, created_by FROM console_links WHERE org_id = $1", org.tenant.org.org_id
    )
    assert row["intent"] == "audit"
    assert row["label"] == "Ann"
    assert row["created_by"].startswith("admin:")
