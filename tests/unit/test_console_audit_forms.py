"""How the audit pages read their fields: a browser's datetime-local value is UTC, an offset is honoured, a
missing bound of a bounded window is filled in, and what cannot be used is a BadInput that says why."""

import datetime

import pytest

from app.http.console.audit_forms import BadInput, bounded_window, choice, field, form_instant, window

UTC = datetime.UTC


def test_a_datetime_local_value_is_read_as_utc_and_an_offset_is_honoured() -> None:
    start, end = window({"from": "2026-11-22T10:00", "to": "2026-11-22T12:30:15+01:00"})
    assert start == datetime.datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert end == datetime.datetime(2026, 11, 22, 11, 30, 15, tzinfo=UTC)
    assert form_instant(end) == "2026-11-22T11:30:15"


def test_an_open_window_stays_open_and_a_bounded_one_is_filled_in() -> None:
    assert window({}) == (None, None)
    before = datetime.datetime.now(UTC)
    start, end = bounded_window({}, datetime.timedelta(days=90))
    assert before <= end <= datetime.datetime.now(UTC)
    assert end - start == datetime.timedelta(days=90)
    start, end = bounded_window({"to": "2026-01-31T00:00"}, datetime.timedelta(days=30))
    assert start == datetime.datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2026-11-22 ten o'clock"}, "is not an ISO 8601"),
        ({"from": "2026-11-23T00:00", "to": "2026-11-22T00:00"}, "the window is reversed"),
    ],
)
def test_a_window_that_cannot_be_used_says_why(params: dict[str, str], words: str) -> None:
    with pytest.raises(BadInput, match=words):
        window(params)


def test_fields_are_stripped_and_what_no_name_holds_is_refused() -> None:
    assert field({"user": "  ann  "}, "user") == "ann"
    assert field({"user": "   "}, "user") is None
    with pytest.raises(BadInput):
        field({"user": "a\x00b"}, "user")
    with pytest.raises(BadInput):
        field({"user": "a" * 301}, "user")
    assert choice({"kind": "membership"}, "kind", {"membership": ()}) == "membership"
    with pytest.raises(BadInput, match="not one of the choices"):
        choice({"kind": "all"}, "kind", {"membership": ()})
