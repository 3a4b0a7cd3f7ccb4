"""Reading the whole log in an order a tailing reader can trust: in batches, by type, and through a window
that the consumers of one runner share."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable

import msgspec

from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, LOG_START, LogPosition, RecordedEvent, record_of

# Positions are taken at INSERT but become visible at COMMIT, so "position > last seen" skips events whose
# transaction commits late. Ordering by the writing transaction's id and reading only transactions older
# than the oldest one still running (the snapshot's xmin) returns each event exactly once, after every
# event that sorts before it is visible. The cost: a long-running transaction anywhere holds readers back.
_READ_LOG = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE (tx, position) > ($1::xid8, $2::bigint)
  AND tx < pg_snapshot_xmin(pg_current_snapshot())
  AND ($4::text[] IS NULL OR type = ANY($4::text[]))
ORDER BY tx, position
LIMIT $3
"""


async def read_log(
    connection: Connection, after: LogPosition, limit: int, types: Iterable[str] | None = None
) -> list[RecordedEvent]:
    """Up to `limit` events after `after`, of `types` if given, in an order a tailing reader can trust."""
    type_list = sorted(types) if types is not None else None
    rows = await connection.fetch(_READ_LOG, after.tx, after.position, limit, type_list)
    return [record_of(row) for row in rows]


class LogScan(msgspec.Struct, frozen=True):
    """What one step of a log reader got: the events it wants, and where in the log it stopped looking."""

    events: list[RecordedEvent]
    examined: int
    end: LogPosition | None


async def scan_log(
    connection: Connection, after: LogPosition, limit: int, types: Iterable[str] | None = None
) -> LogScan:
    """Examine up to `limit` events after `after` in the order of `read_log`; keep those of `types` if given.

    A reader that stores `end` as its position never examines the same event twice, however rare its types:
    read with `read_log(types=…)`, a reactor of rare events would start from its last event of interest each
    time and re-read the whole log behind it, on every wake-up.
    """
    return _scanned(await read_log(connection, after, limit), types)


def _scanned(examined: list[RecordedEvent], types: Iterable[str] | None) -> LogScan:
    if not examined:
        return LogScan([], 0, None)
    wanted = examined if types is None else [event for event in examined if event.type in types]
    return LogScan(wanted, len(examined), examined[-1].log_position)


class LogWindow:
    """The events last read from the log, for the consumers of one runner to share: each part of the log is
    read and decoded once, not once per consumer (five, and every new projection would have added one).

    It holds exactly the log's events after `_start` up to its last one, in log order: it only ever grows by
    a commit-safe read right after its last event, is replaced by one right after the position asked for,
    or loses its oldest events. A consumer whose position is outside it reads the database, as before.
    The events are shared: their payloads must not be changed in place.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._start = LOG_START
        self._events: list[RecordedEvent] = []
        self._positions: list[LogPosition] = []
        self._reading = asyncio.Lock()

    async def scan(
        self, connection: Connection, after: LogPosition, limit: int, types: Iterable[str] | None = None
    ) -> LogScan:
        """As `scan_log`, from the window where it can."""
        examined = self._held(after, limit)
        if len(examined) < limit:
            async with self._reading:
                examined = self._held(after, limit)  # another consumer may have read more meanwhile
                if len(examined) < limit:
                    # Only what lies beyond the window, which ends where `examined` does, if anywhere.
                    last = examined[-1].log_position if examined else after
                    read = await read_log(connection, last, limit - len(examined))
                    self._keep(last, read)
                    examined = examined + read
        return _scanned(examined, types)

    def _held(self, after: LogPosition, limit: int) -> list[RecordedEvent]:
        if not self._positions or after < self._start or after >= self._positions[-1]:
            return []
        first = bisect.bisect_right(self._positions, after)
        return self._events[first : first + limit]

    def _keep(self, after: LogPosition, read: list[RecordedEvent]) -> None:
        if not read or after < self._start:
            return  # a consumer behind the others: the window stays where they read
        if not self._positions or after != self._positions[-1]:
            self._start, self._events, self._positions = after, [], []
        self._events += read
        self._positions += [event.log_position for event in read]
        surplus = len(self._events) - self._capacity
        if surplus > 0:
            self._start = self._positions[surplus - 1]
            del self._events[:surplus], self._positions[:surplus]
