"""The access timeline drawn as SVG on the server: a pure function of the bars (no I/O, no JavaScript).

One row per user (a group's view) or per Project × Role (a user's view), in the order the bars come in (the
projection's: projections/access_timeline.py), a time axis whose ticks fit the window (hours, days, weeks,
months or years), and one link per bar, to wherever the caller's `link(bar)` says (the console decides its
URLs), titled with who held what, from when to when, granted and revoked by whom.

Styling is the console's CSS: every mark has a class (`bar granted`, `bar open`, `continues`, `began-before`,
`tick`, `gridline`, `row-label`, ...) and no colour is written here. Every name is escaped: userNames are
chosen by whoever provisions users, that is by the customer's IdP, and must never become markup.

Accessibility: the SVG is a `role="group"` named by its `<title>` and described by its `<desc>` (a summary in
words). It is not `role="img"`: an image's children are presentational, which would hide the links from
assistive technology (axe-core reports such nested links as a serious violation); each link carries its own
`aria-label`, the same words as its tooltip. Times are written in `zone` (the viewer's), with UTC beside them.
"""

from __future__ import annotations

import datetime
import html
import re
from collections.abc import Callable, Sequence
from typing import Literal

from projections.access_timeline import TimelineBar

LABEL_WIDTH = 230
CHART_WIDTH = 760
RIGHT_MARGIN = 24
AXIS_HEIGHT = 32
ROW_HEIGHT = 20
BAR_HEIGHT = 12
MIN_BAR_WIDTH = 2.0  # a grant of a second still shows, and can be clicked
LABEL_CHARACTERS = 32
MAX_TICKS = 12

Unit = Literal["hour", "day", "week", "month", "year"]
Tick = tuple[datetime.datetime, str]

# Characters XML 1.0 forbids even as references: a name holding one would make the SVG ill-formed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def escape(text: str) -> str:
    """`text` as XML character data or an attribute's value: markup escaped, forbidden characters replaced."""
    return html.escape(_NOT_XML.sub("\ufffd", text), quote=True)


def _same(text: str) -> str:
    return text


class _Escaped(dict[str, str]):
    """Escaped strings by their text: a page's names and actors repeat from bar to bar (a row's user, the
    group's pair, Okta's token), and escaping each once is most of what drawing 10,000 bars saves."""

    def __missing__(self, text: str) -> str:
        escaped = self[text] = escape(text)
        return escaped


def shown(instant: datetime.datetime, zone: datetime.tzinfo, text: Callable[[str], str] = _same) -> str:
    """An instant in the viewer's zone, with UTC beside it when that is another zone. `text` is applied to
    the zone's name (escaping it): the rest is digits and punctuation."""
    local = instant.astimezone(zone)
    # isoformat rather than strftime: four times faster, and a page formats two instants a bar.
    shown_text = f"{local.isoformat(' ', 'seconds')[:19]} {text(local.tzname() or '')}".rstrip()
    if local.utcoffset():
        shown_text += f" (UTC {instant.astimezone(datetime.UTC).isoformat(' ', 'seconds')[:19]})"
    return shown_text


def describe(
    bar: TimelineBar, zone: datetime.tzinfo = datetime.UTC, text: Callable[[str], str] = _same
) -> str:
    """A bar in words: its tooltip and its link's accessible name. `text` is applied to every name in them
    (the chart passes an escaping one; the words around them need no escaping)."""
    granted_cause = f" ({text(bar.grant_cause)})" if bar.grant_cause else ""
    if bar.revoked_at is None:
        until = "still held"
    else:
        cause = f" ({text(bar.revoke_cause)})" if bar.revoke_cause else ""
        until = f"until {shown(bar.revoked_at, zone, text)}, revoked by {text(bar.revoked_by or '')}{cause}"
    return (
        f"{text(bar.user_name)} held {text(bar.project)} × {text(bar.role)} from "
        f"{shown(bar.granted_at, zone, text)}, granted by {text(bar.granted_by)}{granted_cause}; {until}"
    )


def _steps(span: datetime.timedelta, size: datetime.timedelta, choices: Sequence[int]) -> int:
    """The smallest step among `choices` (in units of `size`) that keeps the ticks to MAX_TICKS."""
    for step in choices:
        if span / (size * step) <= MAX_TICKS:
            return step
    return choices[-1]


def axis_ticks(
    start: datetime.datetime, end: datetime.datetime, zone: datetime.tzinfo = datetime.UTC
) -> tuple[Unit, list[Tick]]:
    """The unit of the window's axis and its ticks (instants within [start, end] and their labels), on
    boundaries of the viewer's calendar: hours up to two days, days up to three weeks, weeks (Mondays) up to
    four months, months up to three years, years beyond; at most about MAX_TICKS of them."""
    span = end - start
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    day = datetime.timedelta(days=1)
    unit: Unit
    walls: list[datetime.datetime] = []  # the ticks in wall-clock time, naive
    first_day = local_start.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    if span <= 2 * day:
        unit, step = "hour", _steps(span, datetime.timedelta(hours=1), (1, 2, 3, 6, 12))
        wall = local_start.replace(tzinfo=None, minute=0, second=0, microsecond=0)
        wall += datetime.timedelta(hours=-wall.hour % step)
        walls = _every(wall, local_end, lambda at: at + datetime.timedelta(hours=step))
    elif span <= 21 * day:
        unit, step = "day", _steps(span, day, (1, 2, 3))
        walls = _every(first_day, local_end, lambda at: at + day * step)
    elif span <= 120 * day:
        unit, step = "week", _steps(span, 7 * day, (1, 2, 4))
        monday = first_day - day * first_day.weekday()
        walls = _every(monday, local_end, lambda at: at + 7 * day * step)
    elif span <= 3 * 366 * day:
        unit, step = "month", _steps(span, 30 * day, (1, 2, 3, 6))
        month = first_day.replace(day=1, month=first_day.month - (first_day.month - 1) % step)
        walls = _every(month, local_end, lambda at: _add_months(at, step))
    else:
        unit, step = "year", _steps(span, 365 * day, (1, 2, 5, 10, 25, 50, 100))
        # Rounded down to a multiple of the step, but never below the calendar's year 1.
        year = first_day.replace(month=1, day=1, year=max(1, first_day.year - first_day.year % step))
        walls = _every(year, local_end, lambda at: at.replace(year=at.year + step))
    instants = [wall.replace(tzinfo=zone) for wall in walls]
    within = [instant for instant in instants if start <= instant <= end]
    previous = [None, *within][: len(within)]  # no tick at all within a window shorter than a step
    return unit, [(at, _label(unit, at, before)) for at, before in zip(within, previous, strict=True)]


def _every(
    first: datetime.datetime,
    local_end: datetime.datetime,
    following: Callable[[datetime.datetime], datetime.datetime],
) -> list[datetime.datetime]:
    end = local_end.replace(tzinfo=None)
    walls = []
    at = first
    while at <= end:
        walls.append(at)
        try:
            at = following(at)
        except (OverflowError, ValueError):  # the next tick would be past the calendar's year 9999
            break
    return walls


def _add_months(at: datetime.datetime, months: int) -> datetime.datetime:
    index = at.month - 1 + months
    return at.replace(year=at.year + index // 12, month=index % 12 + 1)


def _label(unit: Unit, instant: datetime.datetime, previous: datetime.datetime | None) -> str:
    """A tick's label, naming the day or the year again only where it changes (and on the first tick)."""
    new_year = previous is None or previous.year != instant.year
    match unit:
        case "hour":
            if previous is None:
                return f"{instant.day} {instant:%b %H:%M}"
            return f"{instant.day} {instant:%b}" if instant.date() != previous.date() else f"{instant:%H:%M}"
        case "day" | "week":
            return f"{instant.day} {instant:%b}" + (f" {instant.year}" if new_year else "")
        case "month":
            return f"{instant:%b %Y}" if new_year else f"{instant:%b}"
        case "year":
            return f"{instant.year}"


def _row_of(bar: TimelineBar, view: Literal["group", "user"]) -> tuple[object, str]:
    if view == "group":
        return bar.user_id, bar.user_name
    return bar.group_id, f"{bar.project} × {bar.role}"


def _classes(bar: TimelineBar) -> str:
    classes = ["bar", "open" if bar.open else "granted"]
    if bar.continues and not bar.open:
        classes.append("continues")
    if bar.began_before:
        classes.append("began-before")
    return " ".join(classes)


# What a bar may link to: a path of this site (or a query or fragment of this page), or an http(s) URL. A
# prefix test rather than a parse, because browsers ignore what a parser would not (" javascript:", "java\tscript:").
_LINKABLE = ("/", "?", "#", "http://", "https://")


def _safe_link(target: str) -> str:
    """The caller's URL, refused unless it is one of _LINKABLE's (javascript:, data:, ... could run something)."""
    if not target.lower().startswith(_LINKABLE) or target.startswith("//"):
        raise ValueError(f"A bar links to a page of the console, not to {target!r}.")
    return target


def render_timeline(
    bars: Sequence[TimelineBar],
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    view: Literal["group", "user"],
    link: Callable[[TimelineBar], str],
    zone: datetime.tzinfo = datetime.UTC,
    title: str = "Access timeline",
    element_id: str = "access-timeline",
) -> str:
    """The SVG of `bars` (a page of them, in rows' order) over [start, end]. `link(bar)` is each bar's URL
    (relative or http(s); ValueError otherwise); `zone` the viewer's; `element_id` prefixes the ids of the
    title and description, so that two charts on a page do not share them (letters, digits, - and _)."""
    if _ID.fullmatch(element_id) is None:
        raise ValueError(f"Not an id for the chart: {element_id!r}.")
    rows: dict[object, list[TimelineBar]] = {}
    labels: dict[object, str] = {}
    for bar in bars:
        key, label = _row_of(bar, view)
        rows.setdefault(key, []).append(bar)
        labels[key] = label
    width = LABEL_WIDTH + CHART_WIDTH + RIGHT_MARGIN
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(rows), 1) + 8
    origin, span = start.timestamp(), (end - start).total_seconds()
    scale = CHART_WIDTH / span if span > 0 else 0.0

    def x(instant: datetime.datetime) -> float:
        return LABEL_WIDTH + min(max((instant.timestamp() - origin) * scale, 0.0), CHART_WIDTH)

    held = sum(1 for bar in bars if bar.open)
    kind = "users" if view == "group" else "Project × Role pairs"
    summary = (
        f"{len(bars)} grants of {len(rows)} {kind} from {shown(start, zone)} to {shown(end, zone)}; "
        f"{held} still held."
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="group" '
        f'aria-labelledby="{element_id}-title" aria-describedby="{element_id}-desc">',
        f'<title id="{element_id}-title">{escape(title)}</title>',
        f'<desc id="{element_id}-desc">{escape(summary)}</desc>',
        '<g class="axis" aria-hidden="true">',
        f'<line class="axis-line" x1="{LABEL_WIDTH}" y1="{AXIS_HEIGHT - 4}" '
        f'x2="{LABEL_WIDTH + CHART_WIDTH}" y2="{AXIS_HEIGHT - 4}"/>',
    ]
    for instant, label in axis_ticks(start, end, zone)[1]:
        at = f"{x(instant):.1f}"
        parts.append(f'<line class="gridline" x1="{at}" y1="{AXIS_HEIGHT - 8}" x2="{at}" y2="{height - 8}"/>')
        parts.append(
            f'<text class="tick" x="{at}" y="{AXIS_HEIGHT - 12}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</g>")
    if not rows:
        parts.append(
            f'<text class="empty" x="{LABEL_WIDTH}" y="{AXIS_HEIGHT + ROW_HEIGHT - 6}">'
            "No access was held in this window.</text>"
        )
    escaped = _Escaped()
    for index, (key, row) in enumerate(rows.items()):
        top = AXIS_HEIGHT + ROW_HEIGHT * index
        name = labels[key]
        short = name if len(name) <= LABEL_CHARACTERS else name[: LABEL_CHARACTERS - 1] + "…"
        parts.append('<g class="row">')
        parts.append(
            f'<text class="row-label" x="{LABEL_WIDTH - 8}" y="{top + ROW_HEIGHT - 6}" text-anchor="end">'
            f"<title>{escaped[name]}</title>{escaped[short]}</text>"
        )
        bar_top = f"{top + (ROW_HEIGHT - BAR_HEIGHT) / 2:.1f}"
        for bar in row:
            left = x(bar.shown_from)
            bar_width = max(x(bar.shown_to) - left, MIN_BAR_WIDTH)
            words = describe(bar, zone, escaped.__getitem__)
            parts.append(
                f'<a href="{escape(_safe_link(link(bar)))}" class="bar-link" aria-label="{words}">'
                f"<title>{words}</title>"
                f'<rect class="{_classes(bar)}" x="{left:.1f}" y="{bar_top}" '
                f'width="{bar_width:.1f}" height="{BAR_HEIGHT}"/></a>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)
