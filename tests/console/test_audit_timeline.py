"""The audit section's access timeline (a bar per grant, names escaped, each bar linked to the events that
opened and closed it) and its as-of view (the state at a past instant, not today's)."""

from __future__ import annotations

import html
import re

import asyncpg
import httpx
import pytest

from app.http.console import audit_as_of_routes
from tests.console.audit_story import HOSTILE, Story, okta_history, table_rows
from tests.console.helpers import console_org, sign_in

BAR_LINK = re.compile(r'<a href="([^"]+)" class="bar-link"')


@pytest.fixture
async def story(browser_like: httpx.AsyncClient, pool: asyncpg.Pool) -> Story:
    org = await console_org(pool)
    told = await okta_history(browser_like, pool, org)
    await sign_in(browser_like, org, "audit")
    return told


def window(story: Story) -> dict[str, str]:
    return {"from": story.start.isoformat(), "to": story.end.isoformat()}


async def test_a_groups_timeline_draws_one_bar_per_interval_with_names_as_text(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get(
        "/console/audit/timeline", params={"group": story.admin_group, **window(story)}
    )
    assert page.status_code == 200
    api = await browser_like.get(
        "/audit/access", params={**window(story), "role": "Admin"}, headers=story.auditor
    )
    intervals = api.json()["intervals"]
    assert len(intervals) == 3
    assert page.text.count('<rect class="bar') == len(intervals)
    assert HOSTILE not in page.text
    assert "&lt;script&gt;" in page.text
    assert "<script>alert" not in page.text


async def test_a_users_timeline_draws_their_pairs(browser_like: httpx.AsyncClient, story: Story) -> None:
    page = await browser_like.get("/console/audit/timeline", params={"user": story.bob, **window(story)})
    assert page.status_code == 200
    assert page.text.count('<rect class="bar') == 2
    assert "Apollo × Admin" in page.text
    assert "Apollo × Viewer" in page.text


async def test_a_bar_links_to_the_events_that_opened_and_closed_it(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get("/console/audit/timeline", params={"user": story.ann, **window(story)})
    links = [html.unescape(link) for link in BAR_LINK.findall(page.text)]
    assert len(links) == 1
    path, anchor = links[0].split("#")
    history = await browser_like.get(path)
    assert history.status_code == 200
    assert f'id="{anchor}"' in history.text
    rows = table_rows(history.text)
    assert len(rows) == 2
    assert "added to group" in rows[0]
    assert "removed from group" in rows[1]
    assert all("Apollo-Admin" in row for row in rows)


async def test_the_timeline_without_a_subject_offers_the_groups(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get("/console/audit/timeline")
    assert page.status_code == 200
    assert f'<option value="{story.admin_group}">' in page.text
    assert f'<option value="{story.viewer_group}">' in page.text
    assert "bar-link" not in page.text


async def test_as_of_shows_the_organization_at_a_past_instant_not_now(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    then = await browser_like.get("/console/audit/as-of", params={"at": story.middle.isoformat()})
    assert then.status_code == 200
    rows = table_rows(then.text)
    ann = next(row for row in rows if row.startswith("ann-"))
    assert "active" in ann.split()
    assert "Apollo-Admin" in ann
    admins = next(row for row in rows if "Apollo-Admin" in row.split()[0])
    assert "ann-" in admins
    assert "bob-" not in admins
    now = table_rows(
        (await browser_like.get("/console/audit/as-of", params={"at": story.end.isoformat()})).text
    )
    assert "inactive" in next(row for row in now if row.startswith("ann-")).split()
    admins_now = next(row for row in now if "Apollo-Admin" in row.split()[0])
    assert "bob-" in admins_now
    assert "ann-" not in admins_now
    before = await browser_like.get("/console/audit/as-of", params={"at": "2020-01-01T00:00"})
    assert "No user yet at this instant." in table_rows(before.text)


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/console/audit/as-of", {"at": "tomorrow"}, "is not an ISO 8601"),
        (
            "/console/audit/timeline",
            {"from": "2026-11-02T10:00", "to": "2026-11-01T10:00", "user": "x"},
            "reversed",
        ),
        ("/console/audit/timeline", {"from": "2026-11-02T10:61"}, "is not an ISO 8601"),
        (
            "/console/audit/timeline",
            {"group": "11111111-1111-1111-1111-111111111111", "user": "x"},
            "not both",
        ),
        ("/console/audit/timeline", {"group": "nope"}, "takes an id"),
    ],
)
async def test_a_bad_instant_or_window_is_a_400_page(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, path: str, params: dict[str, str], words: str
) -> None:
    await sign_in(browser_like, await console_org(pool), "audit")
    page = await browser_like.get(path, params=params)
    assert page.status_code == 400
    assert words in html.unescape(page.text)


async def test_a_timeline_page_link_of_another_timeline_is_a_400_page(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get("/console/audit/timeline", params={"user": story.ann, "after": "bogus"})
    assert page.status_code == 400
    assert "not one of this timeline" in html.unescape(page.text)


async def test_another_organizations_ids_show_nothing(
    browser_like: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    stranger = await console_org(pool)
    async with httpx.AsyncClient(
        transport=browser_like._transport, base_url=str(browser_like.base_url)
    ) as other:
        await sign_in(other, stranger, "audit")
        for path, params in [
            ("/console/audit/timeline", {"group": story.admin_group}),
            ("/console/audit/timeline", {"user": story.ann}),
            ("/console/audit/history", {"user": story.ann}),
            ("/console/audit/history", {"group": story.admin_group}),
            ("/console/audit/review", {"user": story.ann}),
        ]:
            page = await other.get(path, params=params)
            assert page.status_code in (200, 404), (path, page.status_code)
            assert "ann-" not in page.text
            assert "Apollo" not in page.text
        assert (
            await other.get("/console/audit/timeline", params={"group": story.admin_group})
        ).status_code == 404
        assert (await other.get("/console/audit/history", params={"user": story.ann})).status_code == 404


async def test_a_users_timeline_asked_by_id_is_titled_with_their_name(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get("/console/audit/timeline", params={"user": story.bob, **window(story)})
    [title] = re.findall(r'<h2 id="chart-title">(.*?),', page.text)
    assert title.startswith("What bob-")


async def test_a_window_left_empty_stays_empty_so_that_drawing_again_reaches_now(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    for path in ("/console/audit/timeline", "/console/audit/review"):
        page = await browser_like.get(path, params={"user": story.bob})
        assert page.status_code == 200
        assert re.search(r'name="from" type="datetime-local" step="1" value=""', page.text)
        assert re.search(r'name="to" type="datetime-local" step="1" value=""', page.text)
    given = await browser_like.get(
        "/console/audit/timeline", params={"user": story.bob, "to": "2030-01-02T03:04:05.6Z"}
    )
    assert 'name="to" type="datetime-local" step="1" value="2030-01-02T03:04:05"' in given.text


async def test_as_of_a_large_organization_says_it_shows_a_part_and_finds_someone_by_name(
    browser_like: httpx.AsyncClient, story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_as_of_routes, "USERS_SHOWN", 2)
    at = {"at": story.end.isoformat()}
    page = await browser_like.get("/console/audit/as-of", params=at)
    users = [row for row in table_rows(page.text) if "@audit.example" in row.split()[0]]
    assert len(users) == 2
    assert "The first 2 by userName are shown" in page.text
    found = await browser_like.get("/console/audit/as-of", params={**at, "user": "BOB-"})
    assert "The first 2" not in found.text
    assert [row.split()[0][:4] for row in table_rows(found.text) if "@audit.example" in row.split()[0]] == [
        "bob-"
    ]
