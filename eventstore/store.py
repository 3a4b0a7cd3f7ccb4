"""Append, read a stream, and read the whole log in an order a tailing reader can trust."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from eventsourcing.domain import Aggregate

from eventstore.inline_projection import FollowUp, InlineProjection
from eventstore.log_reader import read_log
from eventstore.notify import CommitNotifier
from eventstore.personal_data import (
    PersonalDataCipher,
    UserKey,
    cipher_of,
    opened_rows,
    readable,
    sealing,
)
from eventstore.pool import CONNECTION_LOST, CommitOutcomeUnknown, Connection
from eventstore.records import (
    APPEND_ONE,
    APPEND_ROWS,
    EVENT_COLUMNS,
    LOG_START,
    AggregateEvent,
    LogPosition,
    Metadata,
    RecordedEvent,
    StreamAppend,
    append_rows,
    as_read,
    colliding_append,
    key_parameters,
    pending_appends,
    record_of,
    within_append,
)


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

# Each stream's first row carries the stream's data key, if it has one (a user's; see personal_data.py): the
# key comes with the events it decrypts, in the same statement and snapshot, and no round trip of its own.
_WITH_DATA_KEY = f"""{EVENT_COLUMNS}, CASE WHEN version = 1 THEN (
    SELECT wrapped_key FROM personal_data_keys AS k WHERE k.org_id = events.org_id AND k.user_id = events.stream_id
) END AS wrapped_key"""
_READ_STREAMS = f"""
SELECT {_WITH_DATA_KEY} FROM events
WHERE org_id = $1 AND stream_id = ANY($2::uuid[]) AND {ASSIGNED_TX}
ORDER BY stream_id, version
"""
# The same for the commonest read, one stream (every SCIM write to a user or a group loads one). Not a planning
# detail: PostgreSQL plans the statement above anew on every execution, as it did `APPEND_ROWS`, and
# planning it cost more than running it; this one is planned once per connection.
_READ_STREAM = f"""
SELECT {_WITH_DATA_KEY} FROM events
WHERE org_id = $1 AND stream_id = $2::uuid AND {ASSIGNED_TX}
ORDER BY version
"""

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


def _fold(records: Sequence[RecordedEvent]) -> dict[uuid.UUID, Any]:
    """Aggregates replayed from events of their streams, in stream and version order."""
    aggregates: dict[uuid.UUID, Any] = {}
    for recorded in records:
        aggregates[recorded.stream_id] = recorded.to_domain_event().mutate(aggregates.get(recorded.stream_id))
    return aggregates


def _opened_and_folded(
    rows: Sequence[asyncpg.Record], cipher: PersonalDataCipher | None
) -> tuple[dict[uuid.UUID, Any], dict[UserKey, bytes]]:
    records, keys = opened_rows(rows, cipher)
    return _fold(records), keys


def _in_log_order(rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
    return sorted((record_of(row) for row in rows), key=lambda item: item.position)


def _whole_in_one_statement(
    appends: Sequence[StreamAppend], follow_up: FollowUp | None, projection: InlineProjection | None
) -> bool:
    """Whether the append statement alone commits all of the append or none of it: one stream (whose rows
    share one expected version), with the projection's write riding in the statement or no projection."""
    streams = {append.stream_id for append in appends if append.events}
    return len(streams) <= 1 and (follow_up is not None or projection is None)


@asynccontextmanager
async def committing(connection: Connection) -> AsyncIterator[None]:
    """`connection.transaction()`, where losing the connection during the COMMIT raises CommitOutcomeUnknown:
    a failure in the block rolled the work back, one during the COMMIT may not have."""
    body_done = False
    try:
        async with connection.transaction():
            yield
            body_done = True
    except CONNECTION_LOST as error:
        if body_done:
            raise CommitOutcomeUnknown(f"connection lost while committing: {type(error).__name__}") from error
        raise


class Transaction:
    """One database transaction: appends and projection writes made through it commit or roll back together.

    Every append runs the store's inline projection, if it has one, in the same transaction (see
    InlineProjection): writers save, and never project by hand.
    """

    def __init__(self, connection: Connection, projection: InlineProjection | None = None) -> None:
        self.connection = connection
        self._projection = projection
        # Encrypts and decrypts personal data; None writes it in plaintext (see eventstore.pool.LedgerConnection).
        self._cipher = cipher_of(connection)
        # The data keys (wrapped) of users this transaction read or wrote, so that a write after a load asks
        # for no key (a PATCH stays two round trips).
        self._data_keys: dict[UserKey, bytes] = {}
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
        appends = await _off_loop_if_many(len(aggregates), pending_appends, org_id, aggregates, causes)
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
        seal, new_keys = (
            await sealing(self._cipher, self.connection, self._data_keys, appends)
            if self._cipher is not None
            else (None, {})
        )
        rows, columns = await _off_loop_if_many(events, append_rows, appends, metadata, seal)
        if not rows:
            return []
        if new_keys:
            columns = [*columns, *key_parameters(new_keys)]
        if not self.connection.is_in_transaction() and not _whole_in_one_statement(
            appends, follow_up, self._projection
        ):
            # With no transaction open, the append statement commits as it runs: a stale stream's rows are
            # filtered out, not refused, so the streams still at their version would commit without it, and a
            # projection written after the append would commit apart from it. A transaction of its own makes
            # the append whole; a one-stream append whose projection rides in it needs none (a POST's one
            # round trip).
            async with committing(self.connection):
                return await self._append_rows(appends, rows, columns, aggregates, follow_up, new_keys)
        return await self._append_rows(appends, rows, columns, aggregates, follow_up, new_keys)

    async def _append_rows(
        self,
        appends: Sequence[StreamAppend],
        rows: Sequence[Any],
        columns: Sequence[Any],
        aggregates: Mapping[uuid.UUID, Any],
        follow_up: FollowUp | None,
        new_keys: Mapping[UserKey, bytes],
    ) -> list[RecordedEvent]:
        append_sql = APPEND_ONE if len(rows) == 1 else APPEND_ROWS
        autocommit = not self.connection.is_in_transaction()
        try:
            recorded = await self.connection.fetch(
                within_append(
                    append_sql, follow_up.sql if follow_up is not None else None, min(len(new_keys), 2)
                ),
                *columns,
                *(follow_up.args if follow_up is not None else ()),
            )
        except CONNECTION_LOST as error:
            if autocommit:  # the statement was its own COMMIT
                raise CommitOutcomeUnknown(
                    f"connection lost while appending: {type(error).__name__}"
                ) from error
            raise
        except asyncpg.UniqueViolationError as error:
            if error.table_name == "personal_data_keys":
                # Another writer stored this user's first key meanwhile: decide again on fresh state.
                raise ConcurrencyConflict(reason="another writer stored the user's data key first") from error
            if error.table_name != "events":
                # The follow-up's own constraint: its author knows what that means.
                if follow_up is not None and follow_up.refusal is not None:
                    raise follow_up.refusal(error) from error
                raise
            stale = colliding_append(error, appends)
            raise ConcurrencyConflict(stale.stream_id, stale.expected_version) from error
        if len(recorded) != len(rows):
            written = {row["stream_id"] for row in recorded}
            stale = next(append for append in appends if append.events and append.stream_id not in written)
            raise ConcurrencyConflict(stale.stream_id, stale.expected_version)
        self.appended = self.appended or bool(recorded)
        self._data_keys.update(new_keys)
        in_order: list[RecordedEvent] = await _off_loop_if_many(len(recorded), _in_log_order, recorded)
        if self._cipher is not None:
            # What was just stored, as every reader reads it: the payloads as they were before encryption.
            in_order = as_read(in_order, rows)
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
        records, keys = opened_rows(rows, self._cipher)
        self._data_keys.update(keys)
        for recorded in records:
            streams.setdefault(recorded.stream_id, []).append(recorded)
        return streams

    async def load(self, org_id: uuid.UUID, stream_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Aggregates replayed from their streams, by id; streams without events are absent. Each stream is
        read whole by one statement, so optimistic appends still catch a stream that changed meanwhile."""
        ids = list(stream_ids)
        aggregates: dict[uuid.UUID, Any] = {}
        for start in range(0, len(ids), LOAD_BATCH):
            rows = await self.connection.fetch(_READ_STREAMS, org_id, ids[start : start + LOAD_BATCH])
            folded, keys = await _off_loop_if_many(len(rows), _opened_and_folded, rows, self._cipher)
            aggregates.update(folded)
            self._data_keys.update(keys)
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
                async with committing(connection):
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
            except CONNECTION_LOST as error:
                if transaction.appended and not isinstance(error, CommitOutcomeUnknown):
                    # Lost after an append had committed (a read that follows it): the change is saved, and
                    # the caller must not be told otherwise.
                    raise CommitOutcomeUnknown(
                        f"connection lost after appending: {type(error).__name__}"
                    ) from error
                raise
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
            return await readable(connection, await read_log(connection, after, limit))
