"""The event feed: the log as public events (projections/public_events.py), in log order, from an opaque
cursor, for one organization or (the platform's) every one.

It reads the log as the runner does (eventstore/log_reader.py): in (writing transaction, position) order and
only below the snapshot's xmin, so an event whose transaction commits late is never skipped, and a cursor
handed out is never overtaken by an event that sorts before it. Events with no public meaning, and those of
types the reader did not ask for, are examined and passed over: the cursor moves past them, so a filtered
reader never examines the same part of the log twice. A reader with nothing new may wait for a commit
(long polling), woken by the process's commit notifier and, for writes made by other processes, by polling.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import msgspec

from domain.errors import InvalidFeedRequest
from eventstore.notify import CommitNotifier
from eventstore.personal_data import readable
from eventstore.records import EVENT_COLUMNS, LOG_START, LogPosition, RecordedEvent
from projections.public_event_mapping import UnknownEventType, domain_type_names, to_public
from projections.public_events import PublicEvent

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT_SECONDS = 30.0
# A filtered page examines at most this many events of the log, so that a reader of rare types gets an answer
# (perhaps empty, with a cursor further on) in bounded time however long the stretch without them.
EXAMINED_PER_PAGE = 5000
# How soon a reader woken by a commit looks again when its read did not see it yet (see `EventFeed.read`).
_AFTER_COMMIT_SECONDS = 0.05


class FeedPage(msgspec.Struct, frozen=True):
    """What one read of the feed answers, as the API returns it."""

    data: list[PublicEvent]
    next_cursor: str


class _Cursor(msgspec.Struct, frozen=True, array_like=True):
    """What a cursor holds: a version of its own format, and the log position of the last event examined."""

    format: int
    # Bounded as the columns are (tx an xid8, position a bigint), so that a number past them is refused as a
    # cursor this feed never gave, not sent to PostgreSQL to fail there. msgspec takes no bound past int64:
    # tx's upper one is checked in decode_cursor.
    tx: Annotated[int, msgspec.Meta(ge=0)]
    position: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


_CURSOR_FORMAT = 1
_XID8_MAX = 2**64 - 1
_cursor_encoder = msgspec.json.Encoder()
_cursor_decoder = msgspec.json.Decoder(_Cursor)


def encode_cursor(position: LogPosition) -> str:
    raw = _cursor_encoder.encode(_Cursor(_CURSOR_FORMAT, position.tx, position.position))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> LogPosition:
    """The position a cursor of `encode_cursor` holds; InvalidFeedRequest for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError) as error:
        raise _invalid_cursor(cursor) from error
    if decoded.format != _CURSOR_FORMAT or decoded.tx > _XID8_MAX:
        raise _invalid_cursor(cursor)
    return LogPosition(decoded.tx, decoded.position)


def _invalid_cursor(cursor: str) -> InvalidFeedRequest:
    shown = cursor if len(cursor) <= 60 else cursor[:57] + "..."
    return InvalidFeedRequest(
        f"The cursor '{shown}' is not one this feed handed out: pass back a next_cursor exactly as received, "
        "or leave the cursor out to read from the beginning of the log."
    )


# One read: the next events of the log after the cursor, in log order and only below the snapshot's xmin, as
# log_reader.read_log reads them (see it for why), at most $4 of them examined. Of those, the ones of the
# wanted types ($5) are kept up to $3 of them, and the page ends at the last event kept or, if fewer than
# $3 were found, at the last event examined: everything up to the page's end has been examined. Payloads
# and seals are fetched only for the events kept. Every ORDER BY is the index's own order, so that nothing
# is sorted and the count stops the scan at the page's end (the WindowAgg's run condition).
_PAGE = """
SELECT page.position, page.tx, page.org_id, page.stream_id, page.version, page.type, page.schema_version,
       CASE WHEN page.wanted THEN page.payload END, page.occurred_at, page.recorded_at, page.actor,
       page.request_id, page.wanted,
       -- A lookup per event kept, by the seals' primary key: a join would be planned for the examined
       -- events (thousands) and hash the whole seals table for a page of a few.
       CASE WHEN page.wanted THEN (
           SELECT seal.seal FROM audit_seals AS seal
           WHERE seal.org_id = page.org_id AND seal.position = page.position
       ) END AS seal
FROM (
    SELECT examined.*, count(*) FILTER (WHERE examined.wanted) OVER (ORDER BY {order}) AS kept
    FROM (
        SELECT {columns}, type = ANY($5::text[]) AS wanted FROM events
        WHERE {scope} AND tx < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY {order}
        LIMIT $4
    ) AS examined
) AS page
WHERE page.kept <= $3
ORDER BY {order}
"""
# Every organization's events: the log's own order, on its index (tx, position).
_PLATFORM_PAGE = _PAGE.format(
    columns=EVENT_COLUMNS, scope="(tx, position) > ($1::xid8, $2::bigint)", order="tx, position"
)
# One organization's: the same order within it, on the index (org_id, tx, position), which starts at the
# cursor without passing over other organizations' events. Not `org_id = $6 AND (org_id, tx, position) > …`:
# given an equality on org_id, PostgreSQL 15 starts the index scan at the organization's first event and
# filters its way to the cursor, a cost that grows with the cursor (a page 150,000 events in cost 12 ms
# instead of 1.5); bounded by the row comparison below and org_id above, it starts at the cursor.
_ORG_PAGE = _PAGE.format(
    columns=EVENT_COLUMNS,
    scope="(org_id, tx, position) > ($6::uuid, $1::xid8, $2::bigint) AND org_id <= $6::uuid",
    order="org_id, tx, position",
)


class EventFeed:
    """One per process: reads pages of the feed from `pool`, waiting on `notifier` for commits."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        notifier: CommitNotifier,
        poll_seconds: float = 0.5,
        *,
        replica: asyncpg.Pool[asyncpg.Record] | None = None,
    ) -> None:
        self._pool = pool
        self._notifier = notifier
        # Commits made by other processes wake no one here: a waiting reader looks again this often.
        self._poll_seconds = poll_seconds
        # A streaming replica for the catch-up reads, far behind the head (see `_page`).
        self._replica = replica
        self._horizon: _ReplicaHorizon | None = None

    async def read(
        self,
        org_id: uuid.UUID | None,
        after: str | None = None,
        limit: int = DEFAULT_LIMIT,
        types: Sequence[str] | None = None,
        wait_seconds: float = 0.0,
    ) -> FeedPage:
        """`read_page`'s page alone."""
        return (await self.read_page(org_id, after, limit, types, wait_seconds)).page

    async def read_page(
        self,
        org_id: uuid.UUID | None,
        after: str | None = None,
        limit: int = DEFAULT_LIMIT,
        types: Sequence[str] | None = None,
        wait_seconds: float = 0.0,
    ) -> SourcedPage:
        """Up to `limit` public events after the cursor `after` (from the start of the log if None), of
        `types` if given, of `org_id` (every organization's if None); if there are none yet, waits up to
        `wait_seconds` for one. The page's `next_cursor` is where the next read starts: past every event
        examined, even when none was kept."""
        position = decode_cursor(after) if after else LOG_START
        types = types or None  # no types named: every type
        wanted = _wanted(types)
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidFeedRequest(f"The limit must be between 1 and {MAX_LIMIT}; it was {limit}.")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidFeedRequest(
                f"The wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds; it was {wait_seconds:g}."
            )
        # Filtered or not, a page may pass over events (those with no public meaning, or not of `types`): it
        # examines more than it keeps, so that an empty page means a long stretch without any.
        examined = max(limit, EXAMINED_PER_PAGE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        committed = asyncio.Event()
        # Subscribed before the first read, and cleared before each: a commit during a read is not missed.
        unsubscribe = self._notifier.subscribe(committed.set)
        pause = self._poll_seconds
        try:
            while True:
                committed.clear()
                events, position, more, replica_as_of = await self._page(
                    org_id, position, limit, examined, wanted
                )
                remaining = deadline - loop.time()
                if events or remaining <= 0:
                    return SourcedPage(FeedPage(events, encode_cursor(position)), replica_as_of)
                if more:
                    continue  # a stretch with none of `types`, longer than a page: read on, not wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(committed.wait(), min(remaining, pause))
                # Woken by a commit that the read may not see yet: a transaction that began before it and is
                # still running (anywhere on the server) hides it until it ends. Look again soon, then less
                # and less often, up to the polling interval.
                pause = _AFTER_COMMIT_SECONDS if committed.is_set() else min(pause * 2, self._poll_seconds)
        finally:
            unsubscribe()

    async def _page(
        self,
        org_id: uuid.UUID | None,
        after: LogPosition,
        limit: int,
        examined: int,
        wanted: list[str],
    ) -> tuple[list[PublicEvent], LogPosition, bool, datetime.datetime | None]:
        """The page's public events, where it ends, whether the log may go on past it right now (the page
        examined as many events as it could), and, for a page read from the replica, the commit time the
        replica had replayed up to.

        A reader far behind the head reads from the replica. That is safe at any lag because the replica's
        log below its own snapshot's xmin is final, exactly as the primary's is: a transaction below it has
        ended in the WAL replayed so far (an xid the replica has not heard of yet is above every xid it has,
        so above its xmin), and the primary can add nothing below it later. So a page read there skips
        nothing and hands out a cursor that the primary continues without a gap or a repeat; a cursor that
        the primary handed out and the replica has not reached reads nothing there. An answer with no event
        is never the replica's: a reader takes it to mean "caught up", which only the primary can say, and
        the tail, and every wait, are the primary's."""
        if self._replica is not None:
            horizon = await self._replica_horizon(after)
            if after.tx < horizon.settled:
                events, end, more = await self._read(self._replica, org_id, after, limit, examined, wanted)
                if events or more:
                    return events, end, more, horizon.replayed_commit
                after = end  # everything the replica has past the cursor examined: the rest is the primary's
        return (*await self._read(self._pool, org_id, after, limit, examined, wanted), None)

    async def _read(
        self,
        database: asyncpg.Pool[asyncpg.Record],
        org_id: uuid.UUID | None,
        after: LogPosition,
        limit: int,
        examined: int,
        wanted: list[str],
    ) -> tuple[list[PublicEvent], LogPosition, bool]:
        """One page from `database`: its public events, decrypted on the connection that read them (a
        replica holds the same data keys, as of its replay), where it ends, and whether the log may go on."""
        async with database.acquire() as connection:
            if org_id is None:
                rows = await connection.fetch(
                    _PLATFORM_PAGE, after.tx, after.position, limit, examined, wanted
                )
            else:
                rows = await connection.fetch(
                    _ORG_PAGE, after.tx, after.position, limit, examined, wanted, org_id
                )
            if not rows:
                return [], after, False
            wanted_rows = [row for row in rows if row["wanted"]]
            recorded = await readable(connection, [RecordedEvent(*row[:12]) for row in wanted_rows])
        events = []
        for event, row in zip(recorded, wanted_rows, strict=True):
            public = to_public(event, row["seal"])
            assert public is not None  # wanted types are published ones
            events.append(public)
        last = rows[-1]
        return events, LogPosition(last["tx"], last["position"]), len(rows) >= examined

    async def _replica_horizon(self, after: LogPosition) -> _ReplicaHorizon:
        """How far the replica's settled log goes: looked up again only for a reader at or past the last
        known horizon, and at most once a second, so that readers at the head cost the replica nothing."""
        assert self._replica is not None
        now = asyncio.get_running_loop().time()
        known = self._horizon
        if known is not None and (after.tx < known.settled or now - known.seen_at < _HORIZON_SECONDS):
            return known
        row = await self._replica.fetchrow(_REPLICA_HORIZON)
        assert row is not None  # one row, always
        self._horizon = _ReplicaHorizon(row[0], row[1], now)
        return self._horizon


@dataclass(frozen=True, slots=True)
class SourcedPage:
    """A page, and where it came from: `replica_as_of` is set when it was read from the replica (the commit
    time the replica had replayed up to; the HTTP edge states it as Data-As-Of)."""

    page: FeedPage
    replica_as_of: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class _ReplicaHorizon:
    settled: int  # the replica's snapshot xmin: its log below it is final
    replayed_commit: datetime.datetime | None
    seen_at: float


# A server that is not a standby (a replica URL that reached a primary) is as good: its own time is its bound.
# A standby that has replayed no commit since it started states no bound: it is not read (settled 0).
_REPLICA_HORIZON = """
SELECT CASE WHEN replayed IS NULL THEN '0'::xid8 ELSE pg_snapshot_xmin(pg_current_snapshot()) END, replayed
FROM (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp() ELSE now() END) AS r(replayed)
"""
_HORIZON_SECONDS = 1.0


def _wanted(types: Sequence[str] | None) -> list[str]:
    try:
        return sorted(domain_type_names(types))
    except UnknownEventType as error:
        raise InvalidFeedRequest(str(error)) from error
