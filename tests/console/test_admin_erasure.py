"""The console's erasure of a person: a button on the page of a user who left the organization, the console's
confirmation page (with the reason to give), the session's CSRF token, and the same service and refusals as
the CLI and the API."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from app.services.container import Services
from tests.console.admin_helpers import ADMIN
from tests.console.helpers import console_org, csrf_of, sign_in
from tests.console.test_admin_users import invite, listed


async def erasures(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT actor, payload->>'reason' AS reason FROM events WHERE stream_id = $1 AND type = 'UserErased'",
        user_id,
    )
    return [(row["actor"], row["reason"]) for row in rows]


async def test_an_admin_erases_a_removed_user_after_confirming_with_a_reason(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    member = await invite(services, org, "stays@acme.example")
    user_id = await invite(services, org, "leaves@acme.example")
    await services.users.remove_from_organization(org.tenant.org.org_id, user_id, ADMIN)
    csrf = csrf_of(await sign_in(browser_like, org, "admin", label="Dana from IT"))

    assert (
        f'href="/console/users/{member}/erase"'
        not in (await browser_like.get(f"/console/users/{member}")).text
    )
    shown = await browser_like.get(f"/console/users/{user_id}")
    assert f'href="/console/users/{user_id}/erase"' in shown.text

    confirm = await browser_like.get(f"/console/users/{user_id}/erase")
    assert confirm.status_code == 200
    assert "never be read again" in confirm.text
    assert "[erased]" in confirm.text
    assert 'name="reason"' in confirm.text
    assert f'action="/console/users/{user_id}/erase"' in confirm.text

    forged = await browser_like.post(
        f"/console/users/{user_id}/erase", data={"csrf_token": "forged", "reason": "ticket 5"}
    )
    assert forged.status_code == 403
    assert await erasures(pool, user_id) == [], "a form without the session's token does nothing"
    unexplained = await browser_like.post(f"/console/users/{user_id}/erase", data={"csrf_token": csrf})
    assert unexplained.status_code == 409
    assert "needs a reason" in unexplained.text

    erased = await browser_like.post(
        f"/console/users/{user_id}/erase", data={"csrf_token": csrf, "reason": "ticket 5"}
    )
    assert erased.status_code == 200
    assert "Erased the personal data" in erased.text
    assert listed(erased.text) == ["stays@acme.example"]
    assert await erasures(pool, user_id) == [("console:Dana from IT", "ticket 5")]
    assert (await browser_like.get(f"/console/users/{user_id}")).status_code == 404


async def test_a_member_is_refused_and_nothing_is_erased(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    member = await invite(services, org, "member@acme.example")
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))
    refused = await browser_like.post(
        f"/console/users/{member}/erase", data={"csrf_token": csrf, "reason": "ticket 6"}
    )
    assert refused.status_code == 409
    assert "still a member" in refused.text
    assert await erasures(pool, member) == []


async def test_the_retention_policy_is_shown_and_set_on_the_users_page(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "admin")
    assert "Now: off" in page
    forged = await browser_like.post("/console/retention", data={"csrf_token": "forged", "days": "30"})
    assert forged.status_code == 403
    csrf = csrf_of(page)
    saved = await browser_like.post("/console/retention", data={"csrf_token": csrf, "days": "30"})
    assert saved.status_code == 200
    assert "Now: 30 day(s)" in saved.text
    assert (
        await pool.fetchval(
            "SELECT personal_data_retention_days FROM orgs WHERE org_id = $1", org.tenant.org.org_id
        )
        == 30
    )
    assert (
        await browser_like.post("/console/retention", data={"csrf_token": csrf, "days": "0"})
    ).status_code == 400
    off = await browser_like.post("/console/retention", data={"csrf_token": csrf, "days": ""})
    assert "Now: off" in off.text
