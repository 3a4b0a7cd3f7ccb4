"""Append, read a stream, and read the whole log in an order a tailing reader can trust."""

from __future__ import annotations

import asyncio
import bisect
import datetime
import functools
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol

import asyncpg
import msgspec
from eventsourcing.domain import Aggregate

from eventstore.codec import AggregateEvent, EncodedEvent, decode_event, encode_event
from eventstore.notify import CommitNotifier
from eventstore.pool import Connection


class LogPosition(NamedTuple):
    """Where a reader of the whole log stands: (transaction id, position). See `read_log`."""

    tx: int
    position: int


LOG_START = LogPosition(0, 0)


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream first; the command may be retried on fresh state. The store's
    error, not the domain's: no rule refused the command, the database ordered two writers."""

    def __init__(
        self, stream_id: object = None, expected_version: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(
            reason or f"Stream {stream_id} moved past version {expected_version} before this write committed."
        )
        self.stream_id = stream_id
        self.expected_version = expected_version


class Metadata(msgspec.Struct, frozen=True):
    """Who caused an append: a token id ("token:<uuid>") or an admin ("admin:<name>"), and the request id."""

    actor: str
    request_id: str | None = None


class RecordedEvent(msgspec.Struct, frozen=True):
    position: int
    tx: int
    org_id: uuid.UUID
    stream_id: uuid.UUID
    version: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    occurred_at: datetime.datetime
    recorded_at: datetime.datetime
    actor: str
    request_id: str | None

    @property
    def log_position(self) -> LogPosition:
        return LogPosition(self.tx, self.position)

    def to_domain_event(self) -> AggregateEvent:
        return decode_event(
            self.type, self.schema_version, self.payload, self.stream_id, self.version, self.occurred_at
        )


EVENT_COLUMNS = (
    "position, tx, org_id, stream_id, version, type, schema_version, payload, occurred_at, recorded_at, "
    "actor, request_id"
)

# One statement whatever the number of events and streams. Each row carries its stream's expected version;
# the subquery sees the log as it was before this statement, so all of a stream's rows pass or fail
# together. An expected version ahead of the stream is filtered out (it would leave a gap); a stale one
# collides with the primary key (org_id, stream_id, version), which is how the second of two concurrent
# writers with the same expected version fails. Fewer rows returned than sent means a conflict.
_APPEND_ROWS = f"""
INSERT INTO events (org_id, stream_id, version, type, schema_version, payload, occurred_at, actor, request_id)
SELECT e.org_id, e.stream_id, e.version, e.type, e.schema_version, e.payload, e.occurred_at, e.actor,
       e.request_id
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::int[], $6::int[], $7::text[], $8::int[],
            $9::jsonb[], $10::timestamptz[])
     AS e(actor, request_id, org_id, stream_id, expected_version, version, type, schema_version, payload,
          occurred_at)
WHERE (SELECT coalesce(max(version), 0) FROM events AS existing
       WHERE existing.org_id = e.org_id AND existing.stream_id = e.stream_id) = e.expected_version
RETURNING {EVENT_COLUMNS}
"""
# The same for the commonest append, one event (a POST, a PATCH), with the same parameters as scalars. Not
# a planning detail: PostgreSQL re-plans the statement above on every execution, because a plan made for the
# actual arrays always looks cheaper than the generic one. Planning it cost more than executing it (the
# server's CPU per append fell from 630 to 330 us); this one is planned once per connection.
_APPEND_ONE = f"""
INSERT INTO events (org_id, stream_id, version, type, schema_version, payload, occurred_at, actor, request_id)
SELECT $3::uuid, $4::uuid, $6::int, $7::text, $8::int, $9::jsonb, $10::timestamptz, $1::text, $2::text
WHERE (SELECT coalesce(max(version), 0) FROM events AS existing
       WHERE existing.org_id = $3::uuid AND existing.stream_id = $4::uuid) = $5::int
RETURNING {EVENT_COLUMNS}
"""
_APPEND_PARAMETERS = 10
_PLACEHOLDER = re.compile(r"\$(\d+)")


class FollowUp(msgspec.Struct, frozen=True):
    """A write that rides in the append's own statement, such as the inline projection's row.

    Its SQL may read the `position` and `version` of the rows just appended from the CTE `appended`, and must
    change nothing when that is empty (a lost race): the statement is its own transaction when no explicit
    one is open. Placeholders are numbered from $1, as if it stood alone. `refusal` says what a unique
    violation of its own means (a taken userName), as the projection's own statements say it.
    """

    sql: str
    args: tuple[Any, ...]
    refusal: Callable[[asyncpg.UniqueViolationError], Exception] | None = None

    def within_append(self, append_sql: str) -> str:
        return _within_append(append_sql, self.sql)


# A follow-up's SQL is one of a few fixed texts, so each is composed once rather than on every write.
@functools.lru_cache(maxsize=64)
def _within_append(append_sql: str, follow_up_sql: str) -> str:
    shifted = _PLACEHOLDER.sub(lambda match: f"${int(match[1]) + _APPEND_PARAMETERS}", follow_up_sql)
    return f"WITH appended AS ({append_sql}), follow_up AS ({shifted}) SELECT {EVENT_COLUMNS} FROM appended"


class InlineProjection(Protocol):
    """A read model written in the transaction of every append, registered once with the store (EventStore).

    The store calls it, so no writer can append without it: its rows are visible to the next read as soon as
    the append commits (read-your-writes), and its unique indexes refuse an append that would break them.
    """

    def riding(self, org_id: uuid.UUID, aggregates: Sequence[Aggregate]) -> FollowUp | None:
        """The whole projection of these aggregates' pending events as one write that rides in the append's
        statement (no round trip of its own), or None to be called on `project` after the append instead."""
        ...

    async def project(
        self, connection: Connection, recorded: Sequence[RecordedEvent], aggregates: Mapping[uuid.UUID, Any]
    ) -> None:
        """Project `recorded`, just appended on `connection`; `aggregates` holds, by id, the aggregates the
        events came from, as they stand after them, where the writer saved aggregates (empty for raw events)."""
        ...


# The events some transaction wrote, for every read of the log but the runner's (whose horizon, the oldest
# running transaction, is stricter) and the tamper check's (which looks for the others on purpose). A row's
# `tx` defaults to the id of the transaction that inserts it, so one whose `tx` no transaction has yet been
# given was written with a `tx` chosen by hand: a superuser's forgery, which the runner never seals (see
# projections/seals.py) and which must grant nothing, neither folded into a writer's decision nor replayed by a
# rebuild nor shown to an auditor. Every committed row lies below the snapshot's xmax, one past the latest
# transaction to complete. The reading transaction's own rows need the second term: while no transaction that
# began after it has completed, its id is at or beyond that xmax. Each side is a scalar subquery, so that it is
# evaluated once per statement rather than once per row.
ASSIGNED_TX = "(tx < (SELECT pg_snapshot_xmax(pg_current_snapshot())) OR tx = (SELECT pg_current_xact_id_if_assigned()))"

_READ_STREAMS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE org_id = $1 AND stream_id = ANY($2::uuid[]) AND {ASSIGNED_TX}
ORDER BY stream_id, version
"""
# The same for the commonest read, one stream (every SCIM write to a user or a group loads one). Not a planning
# detail: PostgreSQL plans the statement above anew on every execution, as it did `_APPEND_ROWS`, and
# planning it cost more than running it; this one is planned once per connection.
_READ_STREAM = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE org_id = $1 AND stream_id = $2::uuid AND {ASSIGNED_TX}
ORDER BY version
"""

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


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(*row)


# Beyond this many events, an append's encoding and a load's replay run in a worker thread: a group write
# for thousands of members is that many events, hundreds of milliseconds of Python that would otherwise hold
# the event loop, and every other request with it. Below it, a thread's round trip costs more than it saves.
OFF_LOOP_EVENTS = 1000


# Streams one statement of `load` reads. asyncpg turns a result's rows into records on the event loop (a
# Python call for each jsonb payload), so one statement loading every member of a group of 20,000 held the
# loop as long; in batches, other requests are served between them.
LOAD_BATCH = 2000


async def _off_loop_if_many(count: int, function: Any, *args: Any) -> Any:
    if count > OFF_LOOP_EVENTS:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _fold(rows: Sequence[asyncpg.Record]) -> dict[uuid.UUID, Any]:
    """Aggregates replayed from rows of their streams, in stream and version order."""
    aggregates: dict[uuid.UUID, Any] = {}
    for row in rows:
        recorded = _recorded(row)
        aggregates[recorded.stream_id] = recorded.to_domain_event().mutate(aggregates.get(recorded.stream_id))
    return aggregates


def _colliding_append(error: asyncpg.UniqueViolationError, appends: Sequence[StreamAppend]) -> StreamAppend:
    # The violation's detail names the key, "(org_id, stream_id, version)=(…, <stream id>, …)".
    detail = getattr(error, "detail", "") or ""
    return next((append for append in appends if str(append.stream_id) in detail), appends[0])


class StreamAppend(msgspec.Struct, frozen=True):
    """New events for one stream, which must still be at `expected_version` when they are written.

    `causes` gives each event's own metadata where one append records events caused by different requests
    (a reactor's batch); otherwise every event carries the metadata of the append.
    """

    org_id: uuid.UUID
    stream_id: uuid.UUID
    expected_version: int
    events: Sequence[AggregateEvent]
    causes: Sequence[Metadata] | None = None


def pending_append(
    org_id: uuid.UUID, aggregate: Aggregate, causes: Sequence[Metadata] | None = None
) -> StreamAppend | None:
    """The aggregate's pending events, collected, expected where the aggregate was loaded; None if none."""
    events = aggregate.collect_events()
    if not events:
        return None
    return StreamAppend(org_id, aggregate.id, events[0].originator_version - 1, events, causes)


def _append_parameters(row: tuple[uuid.UUID, uuid.UUID, int, EncodedEvent, Metadata]) -> tuple[Any, ...]:
    """One event's values in the order of the append statements' parameters $1 to $10."""
    org_id, stream_id, expected_version, event, cause = row
    return (
        cause.actor,
        cause.request_id,
        org_id,
        stream_id,
        expected_version,
        event.version,
        event.type,
        event.schema_version,
        event.payload,
        event.occurred_at,
    )


def _append_rows(
    appends: Sequence[StreamAppend], metadata: Metadata
) -> tuple[list[tuple[uuid.UUID, uuid.UUID, int, EncodedEvent, Metadata]], list[Any]]:
    """The appends' events, encoded, and the append statement's parameters for them."""
    rows: list[tuple[uuid.UUID, uuid.UUID, int, EncodedEvent, Metadata]] = []
    for append in appends:
        encoded = [encode_event(event) for event in append.events]
        if encoded and encoded[0].version != append.expected_version + 1:
            raise ValueError(
                f"events of {append.stream_id} start at version {encoded[0].version}, "
                f"expected {append.expected_version + 1}"
            )
        causes = append.causes if append.causes is not None else [metadata] * len(encoded)
        if len(causes) != len(encoded):
            raise ValueError(f"{len(encoded)} events of {append.stream_id} but {len(causes)} causes")
        rows += [
            (append.org_id, append.stream_id, append.expected_version, item, cause)
            for item, cause in zip(encoded, causes, strict=True)
        ]
    if len(rows) == 1:
        return rows, list(_append_parameters(rows[0]))
    return rows, [list(column) for column in zip(*map(_append_parameters, rows), strict=True)]


def _pending_appends(
    org_id: uuid.UUID,
    aggregates: Sequence[Aggregate],
    causes: Mapping[uuid.UUID, Sequence[Metadata]] | None,
) -> list[StreamAppend]:
    appends = (
        pending_append(org_id, aggregate, causes.get(aggregate.id) if causes is not None else None)
        for aggregate in aggregates
    )
    return [append for append in appends if append]


def _in_log_order(rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
    return sorted((_recorded(row) for row in rows), key=lambda item: item.position)


class Transaction:
    """One database transaction: appends and projection writes made through it commit or roll back together.

    Every append runs the store's inline projection, if it has one, in the same transaction (see
    InlineProjection): writers save, and never project by hand.
    """

    def __init__(self, connection: Connection, projection: InlineProjection | None = None) -> None:
        self.connection = connection
        self._projection = projection
        # Whether events were written through it: its owner then wakes the log's followers after the commit.
        self.appended = False

    async def append(
        self,
        org_id: uuid.UUID,
        stream_id: uuid.UUID,
        expected_version: int,
        events: Sequence[AggregateEvent],
        metadata: Metadata,
    ) -> list[RecordedEvent]:
        return await self.append_streams(
            [StreamAppend(org_id, stream_id, expected_version, events)], metadata
        )

    async def append_streams(
        self, appends: Sequence[StreamAppend], metadata: Metadata
    ) -> list[RecordedEvent]:
        """Append to several streams at once; any stale expected version fails the whole append. Events
        without their aggregates: the inline projection finds what it needs to render them itself."""
        return await self._append(appends, metadata, {}, None)

    async def save(
        self,
        org_id: uuid.UUID,
        aggregates: Iterable[Aggregate],
        metadata: Metadata,
        causes: Mapping[uuid.UUID, Sequence[Metadata]] | None = None,
    ) -> list[RecordedEvent]:
        """Append every aggregate's pending events, each stream expected where the aggregate was loaded, and
        project them. `causes` gives an aggregate's events their own metadata (see StreamAppend.causes)."""
        aggregates = list(aggregates)
        # Asked before the events are collected: the projection reads the aggregates' pending events.
        riding = self._projection.riding(org_id, aggregates) if self._projection is not None else None
        appends = await _off_loop_if_many(len(aggregates), _pending_appends, org_id, aggregates, causes)
        return await self._append(
            appends, metadata, {aggregate.id: aggregate for aggregate in aggregates}, riding
        )

    async def _append(
        self,
        appends: Sequence[StreamAppend],
        metadata: Metadata,
        aggregates: Mapping[uuid.UUID, Any],
        follow_up: FollowUp | None,
    ) -> list[RecordedEvent]:
        """The append, then the inline projection: `follow_up`, the projection's write, rides in the append's
        statement, so it takes no round trip of its own and, outside an explicit transaction, commits with the
        append or not at all; without one, the projection runs after the append, on the same connection."""
        events = sum(len(append.events) for append in appends)
        rows, columns = await _off_loop_if_many(events, _append_rows, appends, metadata)
        if not rows:
            return []
        append_sql = _APPEND_ONE if len(rows) == 1 else _APPEND_ROWS
        try:
            recorded = await self.connection.fetch(
                append_sql if follow_up is None else follow_up.within_append(append_sql),
                *columns,
                *(follow_up.args if follow_up is not None else ()),
            )
        except asyncpg.UniqueViolationError as error:
            if error.table_name != "events":
                # The follow-up's own constraint: its author knows what that means.
                if follow_up is not None and follow_up.refusal is not None:
                    raise follow_up.refusal(error) from error
                raise
            stale = _colliding_append(error, appends)
            raise ConcurrencyConflict(stale.stream_id, stale.expected_version) from error
        self.appended = self.appended or bool(recorded)
        if len(recorded) != len(rows):
            written = {row["stream_id"] for row in recorded}
            stale = next(append for append in appends if append.events and append.stream_id not in written)
            raise ConcurrencyConflict(stale.stream_id, stale.expected_version)
        in_order: list[RecordedEvent] = await _off_loop_if_many(len(recorded), _in_log_order, recorded)
        if follow_up is None and self._projection is not None:
            await self._projection.project(self.connection, in_order, aggregates)
        return in_order

    async def read_stream(self, org_id: uuid.UUID, stream_id: uuid.UUID) -> list[RecordedEvent]:
        return (await self.read_streams(org_id, [stream_id])).get(stream_id, [])

    async def read_streams(
        self, org_id: uuid.UUID, stream_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[RecordedEvent]]:
        """Several streams of one organization in one round trip; streams without events are absent."""
        streams: dict[uuid.UUID, list[RecordedEvent]] = {}
        rows = await (
            self.connection.fetch(_READ_STREAM, org_id, stream_ids[0])
            if len(stream_ids) == 1
            else self.connection.fetch(_READ_STREAMS, org_id, list(stream_ids))
        )
        for row in rows:
            recorded = _recorded(row)
            streams.setdefault(recorded.stream_id, []).append(recorded)
        return streams

    async def load(self, org_id: uuid.UUID, stream_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Aggregates replayed from their streams, by id; streams without events are absent. Each stream is
        read whole by one statement, so optimistic appends still catch a stream that changed meanwhile."""
        ids = list(stream_ids)
        aggregates: dict[uuid.UUID, Any] = {}
        for start in range(0, len(ids), LOAD_BATCH):
            rows = await self.connection.fetch(_READ_STREAMS, org_id, ids[start : start + LOAD_BATCH])
            aggregates.update(await _off_loop_if_many(len(rows), _fold, rows))
        return aggregates

    async def lock_stream(self, stream_id: uuid.UUID) -> None:
        """Queue behind other lockers of this stream until this transaction ends.

        Appends stay optimistic; a writer that lost a race takes this lock before retrying, so contended
        writers line up instead of colliding again and again.
        """
        await self.connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))", stream_id
        )


class EventStore:
    """The log. `projection`, registered once where the services are built, is written by every append made
    through this store's transactions, in the same transaction (see InlineProjection)."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        notifier: CommitNotifier | None = None,
        projection: InlineProjection | None = None,
    ) -> None:
        self._pool = pool
        self._notifier = notifier
        self._projection = projection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        try:
            async with self._pool.acquire() as connection:
                async with connection.transaction():
                    transaction = Transaction(connection, self._projection)
                    yield transaction
                self._announce(transaction)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as error:
            # The database chose this transaction to give way; like a lost append race, it may be retried.
            raise ConcurrencyConflict(reason=f"the database aborted the transaction: {error}") from error

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Transaction]:
        """A connection with no explicit transaction: each statement commits on its own.

        For writes that a single statement does whole (an append with its follow-up), which saves the two
        round trips of BEGIN and COMMIT.
        """
        async with self._pool.acquire() as connection:
            transaction = Transaction(connection, self._projection)
            try:
                yield transaction
            finally:
                self._announce(transaction)  # each statement committed as it ran, whatever happened after

    def _announce(self, transaction: Transaction) -> None:
        """After a commit: wake the log's followers if the transaction appended events."""
        if transaction.appended and self._notifier is not None:
            self._notifier.committed()

    async def append(
        self,
        org_id: uuid.UUID,
        stream_id: uuid.UUID,
        expected_version: int,
        events: Sequence[AggregateEvent],
        metadata: Metadata,
    ) -> list[RecordedEvent]:
        async with self.transaction() as transaction:
            return await transaction.append(org_id, stream_id, expected_version, events, metadata)

    async def read_stream(self, org_id: uuid.UUID, stream_id: uuid.UUID) -> list[RecordedEvent]:
        async with self._pool.acquire() as connection:
            return await Transaction(connection).read_stream(org_id, stream_id)

    async def read_log(self, after: LogPosition = LOG_START, limit: int = 1000) -> list[RecordedEvent]:
        async with self._pool.acquire() as connection:
            return await read_log(connection, after, limit)


async def read_log(
    connection: Connection, after: LogPosition, limit: int, types: Iterable[str] | None = None
) -> list[RecordedEvent]:
    """Up to `limit` events after `after`, of `types` if given, in an order a tailing reader can trust."""
    type_list = sorted(types) if types is not None else None
    rows = await connection.fetch(_READ_LOG, after.tx, after.position, limit, type_list)
    return [_recorded(row) for row in rows]


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
