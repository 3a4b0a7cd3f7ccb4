"""Append, read a stream, and read the whole log in an order a tailing reader can trust."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg

from domain.errors import ConcurrencyConflict
from eventstore.codec import AggregateEvent, decode_event, encode_event
from eventstore.pool import Connection


class LogPosition(NamedTuple):
    """Where a reader of the whole log stands: (transaction id, position). See `read_log`."""

    tx: int
    position: int


LOG_START = LogPosition(0, 0)


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who caused an append: a token id ("token:<uuid>") or an admin ("admin:<name>"), and the request id."""

    actor: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
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


_COLUMNS = (
    "position, tx, org_id, stream_id, version, type, schema_version, payload, occurred_at, recorded_at, "
    "actor, request_id"
)

# One statement whatever the number of events. The WHERE clause refuses an expected version ahead of the
# stream (which would leave a gap); a stale one collides with the primary key (org_id, stream_id, version),
# which is how two concurrent writers with the same expected version are told apart: the second one fails.
_APPEND = f"""
INSERT INTO events (org_id, stream_id, version, type, schema_version, payload, occurred_at, actor, request_id)
SELECT $1, $2, e.version, e.type, e.schema_version, e.payload, e.occurred_at, $3, $4
FROM unnest($5::int[], $6::text[], $7::int[], $8::jsonb[], $9::timestamptz[])
     AS e(version, type, schema_version, payload, occurred_at)
WHERE (SELECT coalesce(max(version), 0) FROM events WHERE org_id = $1 AND stream_id = $2) = $10
RETURNING {_COLUMNS}
"""

_READ_STREAM = f"""
SELECT {_COLUMNS} FROM events WHERE org_id = $1 AND stream_id = $2 ORDER BY version
"""

# Positions are taken at INSERT but become visible at COMMIT, so "position > last seen" skips events whose
# transaction commits late. Ordering by the writing transaction's id and reading only transactions older
# than the oldest one still running (the snapshot's xmin) returns each event exactly once, after every
# event that sorts before it is visible. The cost: a long-running transaction anywhere holds readers back.
_READ_LOG = f"""
SELECT {_COLUMNS} FROM events
WHERE (tx, position) > ($1::xid8, $2::bigint)
  AND tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx, position
LIMIT $3
"""


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(*row)


class Transaction:
    """One database transaction: appends and projection writes made through it commit or roll back together."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def append(
        self,
        org_id: uuid.UUID,
        stream_id: uuid.UUID,
        expected_version: int,
        events: Sequence[AggregateEvent],
        metadata: Metadata,
    ) -> list[RecordedEvent]:
        if not events:
            return []
        encoded = [encode_event(event) for event in events]
        if encoded[0].version != expected_version + 1:
            raise ValueError(f"events start at version {encoded[0].version}, expected {expected_version + 1}")
        try:
            rows = await self.connection.fetch(
                _APPEND,
                org_id,
                stream_id,
                metadata.actor,
                metadata.request_id,
                [item.version for item in encoded],
                [item.type for item in encoded],
                [item.schema_version for item in encoded],
                [item.payload for item in encoded],
                [item.occurred_at for item in encoded],
                expected_version,
            )
        except asyncpg.UniqueViolationError as error:
            raise ConcurrencyConflict(stream_id, expected_version) from error
        if not rows:
            raise ConcurrencyConflict(stream_id, expected_version)
        return sorted((_recorded(row) for row in rows), key=lambda recorded: recorded.version)

    async def read_stream(self, org_id: uuid.UUID, stream_id: uuid.UUID) -> list[RecordedEvent]:
        return [_recorded(row) for row in await self.connection.fetch(_READ_STREAM, org_id, stream_id)]

    async def lock_stream(self, stream_id: uuid.UUID) -> None:
        """Queue behind other lockers of this stream until this transaction ends.

        Appends stay optimistic; a writer that lost a race takes this lock before retrying, so contended
        writers line up instead of colliding again and again.
        """
        await self.connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))", stream_id
        )


class EventStore:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield Transaction(connection)

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


async def read_log(connection: Connection, after: LogPosition, limit: int) -> list[RecordedEvent]:
    rows = await connection.fetch(_READ_LOG, after.tx, after.position, limit)
    return [_recorded(row) for row in rows]
