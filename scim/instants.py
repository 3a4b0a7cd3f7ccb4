"""dateTime values a client writes in a filter (RFC 7643 §2.3.5: xsd:dateTime, an offset or none)."""

from __future__ import annotations

import datetime


def parse_instant(text: str) -> datetime.datetime:
    """The instant `text` names, in UTC; one without an offset is taken as UTC. ValueError when it is not an
    ISO 8601 time, or lies outside what Python and PostgreSQL share (years 1 to 9999 in UTC): an offset can
    carry a time at the calendar's ends past them (0001-01-01T00:00:00+14:00, 9999-12-31T23:00:00-14:00)."""
    try:
        parsed = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"'{text}' is not an ISO 8601 dateTime such as 2026-11-22T10:00:00Z.") from error
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=datetime.UTC)
    try:
        return parsed.astimezone(datetime.UTC)
    except OverflowError as error:
        raise ValueError(f"'{text}' is outside the years 1 to 9999 in UTC.") from error
