"""The console's erasure of a person: a button on the page of a user who left the organization, the list of
those awaiting erasure (where a user the identity provider deleted, who has no page, is reached), the
console's confirmation page (with the reason to give), the session's CSRF token, and the same service and
refusals as the CLI and the API."""

from __future__ import annotations

import datetime
import re
import uuid

import asyncpg
import httpx

from app.http.console.listing import PAGE_SIZE
from app.services.container import Services
from tests.console.admin_helpers import ADMIN
from tests.console.helpers import console_org, csrf_of, sign_in
from tests.console.test_admin_users import invite, listed, next_of

ERASE_LINK = re.compile(r'href="/console/users/([0-9a-f-]{36})/erase"')


def awaiting(page: str) -> list[uuid.UUID]:
    """The users a page of those awaiting erasure offers to erase, in its order."""
    return [uuid.UUID(found) for found in ERASE_LINK.findall(page)]


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
    assert awaiting(erased.text) == []
    assert listed((await browser_like.get("/console/users")).text) == ["stays@acme.example"]
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


async def test_the_retention_policy_is_shown_and_set_on_the_erasure_page(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    await sign_in(browser_like, org, "admin")
    page = (await browser_like.get("/console/erasure")).text
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


async def test_a_user_the_identity_provider_deleted_awaits_erasure_with_their_due_date_and_is_erased_from_the_list(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    org_id = org.tenant.org.org_id
    await invite(services, org, "stays@acme.example")
    removed = await invite(services, org, "removed@acme.example")
    deleted = await invite(services, org, "deleted@acme.example", given="Grace")
    await services.users.remove_from_organization(org_id, removed, ADMIN)
    await services.users.delete(org_id, deleted, ADMIN)
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))
    assert "deleted@acme.example" not in (await browser_like.get("/console/users")).text
    assert (await browser_like.get(f"/console/users/{deleted}")).status_code == 404, "no page of their own"

    page = (await browser_like.get("/console/erasure")).text
    assert awaiting(page) == [removed, deleted], "in the order they left"
    assert "deleted@acme.example" in page, "named as the log holds them"
    assert "deleted by the identity provider" in page
    assert "removed by an admin" in page
    assert f'<a href="/console/users/{removed}">' in page, "a removed user still has a page"
    assert f'<a href="/console/users/{deleted}">' not in page
    assert "Erased by the policy" not in page, "no policy, no due date"

    await browser_like.post("/console/retention", data={"csrf_token": csrf, "days": "30"})
    deleted_at = await pool.fetchval(
        "SELECT occurred_at FROM events WHERE stream_id = $1 AND type = 'UserDeleted'", deleted
    )
    due = (deleted_at + datetime.timedelta(days=30)).astimezone(datetime.UTC)
    page = (await browser_like.get("/console/erasure")).text
    assert "Erased by the policy" in page
    assert due.strftime("%Y-%m-%d %H:%M:%S UTC") in page

    confirm = await browser_like.get(f"/console/users/{deleted}/erase")
    assert confirm.status_code == 200
    assert "deleted@acme.example" in confirm.text
    assert 'href="/console/erasure"' in confirm.text, "Cancel goes back to the list"
    erased = await browser_like.post(
        f"/console/users/{deleted}/erase", data={"csrf_token": csrf, "reason": "ticket 7"}
    )
    assert erased.status_code == 200
    assert awaiting(erased.text) == [removed]
    assert "deleted@acme.example" not in erased.text
    assert await erasures(pool, deleted) == [("console:Dana", "ticket 7")]
    assert (await browser_like.get(f"/console/users/{deleted}/erase")).status_code == 409, "erased once"


async def test_the_list_awaiting_erasure_comes_a_page_at_a_time(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    left = []
    for index in range(PAGE_SIZE + 3):
        user_id = await invite(services, org, f"left{index:03}@acme.example")
        await services.users.delete(org.tenant.org.org_id, user_id, ADMIN)
        left.append(user_id)
    back = await invite(services, org, "back@acme.example")
    await services.users.remove_from_organization(org.tenant.org.org_id, back, ADMIN)
    await services.users.restore(org.tenant.org.org_id, back, ADMIN)
    await sign_in(browser_like, org, "admin")
    first = (await browser_like.get("/console/erasure")).text
    second_link = next_of(first)
    assert second_link is not None
    second = (await browser_like.get(second_link)).text
    assert awaiting(first) + awaiting(second) == left, "each once, and not one who came back"
    assert next_of(second) is None
    assert (await browser_like.get("/console/erasure?cursor=made-up")).status_code == 400
