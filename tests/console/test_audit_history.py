"""The audit section's history: filters narrow it as they say, pages follow one another by cursor, and a
field the page cannot use is a 400 page that says why."""

from __future__ import annotations

import html
import re

import asyncpg
import httpx
import pytest

from app.http.console import audit_history_routes
from tests.console.audit_story import Story, okta_history, table_rows
from tests.console.helpers import console_org, sign_in


@pytest.fixture
async def story(browser_like: httpx.AsyncClient, pool: asyncpg.Pool) -> Story:
    org = await console_org(pool)
    told = await okta_history(browser_like, pool, org)
    await sign_in(browser_like, org, "audit")
    return told


async def history(client: httpx.AsyncClient, **params: str) -> list[str]:
    page = await client.get("/console/audit/history", params=params)
    assert page.status_code == 200, page.text
    return table_rows(page.text)


async def test_a_user_filter_shows_that_users_events_alone(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    rows = await history(browser_like, user=story.ann)
    assert any("provisioned user 'ann-" in row for row in rows)
    assert any("removed from group" in row and "Apollo-Admin" in row for row in rows)
    assert any("deactivated" in row for row in rows)
    assert not [row for row in rows if "bob-" in row or "script" in row]
    by_name = await history(browser_like, user=rows[0].split("'")[1].upper())
    assert by_name == rows


async def test_kind_role_and_project_filters_narrow_the_history(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    memberships = await history(browser_like, user=story.ann, kind="membership")
    assert len(memberships) == 2
    assert "added to group" in memberships[0]
    assert "removed from group" in memberships[1]
    viewer = await history(browser_like, role="viewer")
    assert any("role 'Viewer' created" in row for row in viewer)
    assert any("added to group" in row and "Apollo-Viewer" in row for row in viewer)
    assert not [row for row in viewer if "Apollo-Admin" in row or "provisioned" in row]
    pair = await history(browser_like, project="APOLLO", role="Admin", kind="membership")
    assert len(pair) == 4  # ann, eve and bob added, ann removed
    assert all("Apollo-Admin" in row for row in pair)
    nothing = await history(browser_like, role="No such role")
    assert nothing == ["No event matches these filters."]


async def test_the_window_and_the_actor_narrow_the_history(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    after_middle = await history(browser_like, **{"from": story.middle.isoformat()})
    assert after_middle
    assert not [row for row in after_middle if "provisioned" in row or "created" in row]
    before_middle = await history(browser_like, to=story.middle.isoformat(), kind="membership")
    assert len(before_middle) == 3
    token = str(story.org.tenant.token_id)
    by_okta = await history(browser_like, actor=token)
    assert len(by_okta) == len(await history(browser_like, actor=f"token:{token}"))
    assert any("provisioned" in row for row in by_okta)
    assert not [row for row in by_okta if "created" in row]  # the catalog was the host app's
    assert await history(browser_like, actor="console:Nobody") == ["No event matches these filters."]


async def test_pages_follow_one_another_by_cursor(
    browser_like: httpx.AsyncClient, story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = await history(browser_like, kind="membership")
    assert len(whole) == 5
    monkeypatch.setattr(audit_history_routes, "PAGE_SIZE", 2)
    seen: list[str] = []
    path = "/console/audit/history?kind=membership"
    while True:
        page = await browser_like.get(path)
        assert page.status_code == 200
        seen += table_rows(page.text)
        following = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if following is None:
            break
        path = html.unescape(following.group(1))
        assert "kind=membership" in path
    assert seen == whole


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "yesterday"}, "is not an ISO 8601"),
        ({"from": "2026-11-02T10:00", "to": "2026-11-01T10:00"}, "the window is reversed"),
        ({"kind": "everything"}, "is not one of the choices"),
        ({"after": "not-a-cursor"}, "not one of this history"),
        ({"group": "not-an-id"}, "takes an id"),
    ],
)
async def test_a_field_the_history_cannot_use_is_a_400_page_saying_why(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, params: dict[str, str], words: str
) -> None:
    await sign_in(browser_like, await console_org(pool), "audit")
    page = await browser_like.get("/console/audit/history", params=params)
    assert page.status_code == 400
    assert words in html.unescape(page.text)
    assert 'class="problem"' in page.text


async def test_a_user_who_is_not_the_organizations_is_a_404_above_the_form(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get(
        "/console/audit/history", params={"user": "nobody@audit.example", "kind": "status"}
    )
    assert page.status_code == 404
    assert "No user by that userName or id in this organization." in page.text
    assert 'name="actor"' in page.text  # the form, to try again
    assert "nobody@audit.example" not in page.text  # the field is cleared
    assert '<option value="status" selected>' in page.text  # the other fields are kept
