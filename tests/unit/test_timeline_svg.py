"""The access timeline's SVG (app/http/console/timeline_svg.py): well-formed whatever the names hold, an axis
that fits the window, bars clipped to it, open grants drawn to its end, a link and words for every bar."""

from __future__ import annotations

import datetime
import uuid
import xml.etree.ElementTree as ElementTree
import zoneinfo

import pytest

from app.http.console.timeline_svg import (
    CHART_WIDTH,
    LABEL_WIDTH,
    axis_ticks,
    describe,
    escape,
    render_timeline,
)
from projections.access_timeline import TimelineBar

UTC = datetime.UTC
SVG = "{http://www.w3.org/2000/svg}"
START = datetime.datetime(2026, 1, 1, tzinfo=UTC)
END = datetime.datetime(2026, 12, 31, tzinfo=UTC)
ALICE = uuid.uuid4()


def bar(
    granted_at: datetime.datetime,
    revoked_at: datetime.datetime | None,
    *,
    user_name: str = "alice@example.com",
    user_id: uuid.UUID = ALICE,
    project: str = "Apollo",
    role: str = "Admin",
    start: datetime.datetime = START,
    end: datetime.datetime = END,
) -> TimelineBar:
    """A bar as the projection reads it: clipped to [start, end]."""
    return TimelineBar(
        user_id=user_id,
        user_name=user_name,
        group_id=uuid.uuid5(uuid.NAMESPACE_URL, project + role),
        project_id=uuid.uuid5(uuid.NAMESPACE_URL, project),
        project=project,
        role_id=uuid.uuid5(uuid.NAMESPACE_URL, role),
        role=role,
        granted_at=granted_at,
        revoked_at=revoked_at,
        shown_from=max(granted_at, start),
        shown_to=min(revoked_at or end, end),
        granted_by="token:okta",
        grant_cause="push",
        granted_request_id="req-1",
        granted_position=10,
        revoked_by=None if revoked_at is None else "reactor:deactivation",
        revoke_cause=None if revoked_at is None else "reactor",
        revoked_request_id=None,
        revoked_position=None if revoked_at is None else 20,
    )


def link(timeline_bar: TimelineBar) -> str:
    return f"/console/audit/events/{timeline_bar.granted_position}?to={timeline_bar.revoked_position}&x=1"


def parsed(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # raises on anything that is not well-formed XML


def rects(svg: str) -> list[ElementTree.Element]:
    return list(parsed(svg).iter(f"{SVG}rect"))


def row_labels(svg: str) -> list[str]:
    """Each row's name, as its label's tooltip holds it whole."""
    return [
        element.findtext(f"{SVG}title") or ""
        for element in parsed(svg).iter(f"{SVG}text")
        if element.get("class") == "row-label"
    ]


def test_long_names_are_shortened_on_the_row_and_whole_in_its_tooltip() -> None:
    long_name = "a-very-long-user-name-that-goes-on@example.com"
    svg = render_timeline([bar(START, None, user_name=long_name)], START, END, view="group", link=link)
    assert row_labels(svg) == [long_name]
    (label,) = (element for element in parsed(svg).iter(f"{SVG}text") if element.get("class") == "row-label")
    assert "".join(label.itertext()).endswith("a-very-long-user-name-that-goes…")


def test_every_name_is_escaped_and_the_svg_stays_well_formed() -> None:
    hostile = '<script>alert(1)</script>"\'&\x01</svg><a href="javascript:x">'
    bars = [
        bar(datetime.datetime(2026, 2, 1, tzinfo=UTC), None, user_name=hostile, project=hostile, role="R&D"),
    ]
    svg = render_timeline(bars, START, END, view="group", link=link, title="Access of <b>")
    root = parsed(svg)
    assert "<script" not in svg
    assert "javascript:" not in svg.replace("javascript:x&quot;", "")  # only as escaped text, never an href
    assert "\x01" not in svg
    assert "&lt;script&gt;" in svg
    texts = [element.text or "" for element in root.iter(f"{SVG}title")]
    assert texts[0] == "Access of <b>"
    assert any(text.startswith("<script>alert(1)</script>\"'&\ufffd") for text in texts)
    (anchor,) = root.iter(f"{SVG}a")
    assert anchor.get("href") == "/console/audit/events/10?to=None&x=1"  # the & escaped, then read back
    assert "R&D" in (anchor.get("aria-label") or "")
    assert "style=" not in svg
    assert "<script" not in svg


@pytest.mark.parametrize(
    "target",
    ["javascript:alert(1)", " javascript:alert(1)", "JAVASCRIPT:x", "data:text/html,x", "//evil.example/"],
)
def test_a_link_that_could_run_something_or_leave_the_site_unnamed_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="links to a page of the console"):
        render_timeline([bar(START, None)], START, END, view="group", link=lambda _: target)


def test_the_chart_s_words_are_the_bar_s_description_escaped() -> None:
    """The chart escapes each name once and composes (faster); the result is the description, escaped."""
    hostile = bar(START, END, user_name='<b a="1">&\x02', project="P&<", role="'R'")
    svg = render_timeline([hostile], START, END, view="group", link=link)
    (anchor,) = parsed(svg).iter(f"{SVG}a")
    assert anchor.get("aria-label") == describe(hostile).replace("\x02", "\ufffd")
    assert f'aria-label="{escape(describe(hostile))}"' in svg


def test_the_chart_is_a_named_group_whose_links_say_who_held_what_when() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    granted = datetime.datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    revoked = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    svg = render_timeline([bar(granted, revoked)], START, END, view="group", link=link, zone=paris)
    root = parsed(svg)
    # Not role="img": an image's children are presentational, which would hide the links.
    assert root.get("role") == "group"
    assert root.get("aria-labelledby") == "access-timeline-title"
    (description,) = root.iter(f"{SVG}desc")
    assert description.get("id") == "access-timeline-desc"
    assert "1 grants of 1 users" in (description.text or "")
    (anchor,) = root.iter(f"{SVG}a")
    words = anchor.get("aria-label") or ""
    assert words == anchor.find(f"{SVG}title").text  # type: ignore[union-attr]
    assert words.startswith("alice@example.com held Apollo × Admin from 2026-03-02 09:30:00 CET")
    assert "(UTC 2026-03-02 08:30:00)" in words
    assert "; until 2026-06-01 14:00:00 CEST" in words
    assert words.endswith("revoked by reactor:deactivation (reactor)")
    assert "(UTC 2026-03-02 08:30:00), granted by token:okta (push); until" in words


def test_a_grant_begun_before_the_window_and_ended_after_it_is_clipped_to_it() -> None:
    before, after = datetime.datetime(2025, 6, 1, tzinfo=UTC), datetime.datetime(2027, 2, 1, tzinfo=UTC)
    inside = (datetime.datetime(2026, 4, 1, tzinfo=UTC), datetime.datetime(2026, 7, 1, tzinfo=UTC))
    svg = render_timeline([bar(before, after), bar(*inside)], START, END, view="group", link=link)
    clipped, middle = rects(svg)
    assert float(clipped.get("x") or 0) == LABEL_WIDTH
    assert float(clipped.get("width") or 0) == pytest.approx(CHART_WIDTH, abs=0.1)
    assert (clipped.get("class") or "").split() == ["bar", "granted", "continues", "began-before"]
    # The words keep the grant as recorded, not as clipped.
    assert "from 2025-06-01 00:00:00 UTC, granted by" in svg
    assert "until 2027-02-01 00:00:00 UTC" in svg
    span = (END - START).total_seconds()
    left = LABEL_WIDTH + CHART_WIDTH * (inside[0] - START).total_seconds() / span
    right = LABEL_WIDTH + CHART_WIDTH * (inside[1] - START).total_seconds() / span
    assert float(middle.get("x") or 0) == pytest.approx(left, abs=0.1)
    assert float(middle.get("width") or 0) == pytest.approx(right - left, abs=0.1)
    assert middle.get("class") == "bar granted"
    assert row_labels(svg) == ["alice@example.com"]  # the same user: one row


def test_an_open_grant_is_drawn_to_the_window_s_end_in_a_style_of_its_own() -> None:
    granted = datetime.datetime(2026, 10, 1, tzinfo=UTC)
    svg = render_timeline([bar(granted, None)], START, END, view="group", link=link)
    (rect,) = rects(svg)
    assert rect.get("class") == "bar open"
    end = float(rect.get("x") or 0) + float(rect.get("width") or 0)
    assert end == pytest.approx(LABEL_WIDTH + CHART_WIDTH, abs=0.1)
    assert "(push); still held</title>" in svg


def test_rows_are_users_in_a_group_s_view_and_pairs_in_a_user_s() -> None:
    bob = uuid.uuid4()
    bars = [
        bar(START, None, project="Apollo", role="Admin"),
        bar(START, None, project="Apollo", role="Viewer"),
        bar(START, None, user_id=bob, user_name="bob@example.com"),
    ]

    def labels(view: str) -> list[str]:
        svg = render_timeline(bars, START, END, view=view, link=link)  # type: ignore[arg-type]
        return row_labels(svg)

    assert labels("group") == ["alice@example.com", "bob@example.com"]
    assert labels("user") == ["Apollo × Admin", "Apollo × Viewer"]


def test_an_empty_window_says_so() -> None:
    svg = render_timeline([], START, END, view="user", link=link)
    assert "No access was held in this window." in svg
    assert not rects(svg)


def test_a_day_is_marked_in_hours() -> None:
    start = datetime.datetime(2026, 3, 10, tzinfo=UTC)
    unit, ticks = axis_ticks(start, start + datetime.timedelta(days=1))
    assert unit == "hour"
    assert [label for _, label in ticks][:3] == ["10 Mar 00:00", "02:00", "04:00"]
    assert ticks[-1] == (start + datetime.timedelta(days=1), "11 Mar")
    assert len(ticks) == 13


def test_a_month_is_marked_in_weeks_from_monday() -> None:
    unit, ticks = axis_ticks(START, datetime.datetime(2026, 2, 1, tzinfo=UTC))
    assert unit == "week"
    assert [label for _, label in ticks] == ["5 Jan 2026", "12 Jan", "19 Jan", "26 Jan"]
    assert all(instant.weekday() == 0 for instant, _ in ticks)


def test_a_year_is_marked_in_months_naming_the_year_where_it_changes() -> None:
    start = datetime.datetime(2025, 7, 1, tzinfo=UTC)
    unit, ticks = axis_ticks(start, datetime.datetime(2026, 7, 1, tzinfo=UTC))
    assert unit == "month"
    assert [label for _, label in ticks] == ["Jul 2025", "Sep", "Nov", "Jan 2026", "Mar", "May", "Jul"]


def test_ticks_fall_on_the_viewer_s_midnights_and_stay_within_the_window() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    start = datetime.datetime(2026, 3, 25, 12, tzinfo=UTC)
    end = datetime.datetime(2026, 4, 2, 12, tzinfo=UTC)  # across the change to summer time
    unit, ticks = axis_ticks(start, end, paris)
    assert unit == "day"
    assert all(instant.astimezone(paris).hour == 0 for instant, _ in ticks)
    assert all(start <= instant <= end for instant, _ in ticks)
    assert ticks[0][1] == "26 Mar 2026"
    assert len(ticks) == 8
    for years in (4, 40):
        unit, ticks = axis_ticks(START, START.replace(year=2026 + years))
        assert unit == "year"
        assert 2 <= len(ticks) <= 13
