"""A window shorter than one step of the axis (seconds, as a bar's link to its events asks for) has no tick
within it, and is drawn all the same."""

import datetime

from app.http.console.timeline_svg import axis_ticks, render_timeline


def test_a_window_without_a_tick_within_it_is_drawn_with_no_tick() -> None:
    start = datetime.datetime(2026, 11, 1, 10, 15, 3, tzinfo=datetime.UTC)
    end = start + datetime.timedelta(seconds=4)
    assert axis_ticks(start, end) == ("hour", [])
    svg = render_timeline([], start, end, view="group", link=lambda bar: "/")
    assert "No access was held in this window." in svg
