"""What the log holds, as read back: recorded events, who caused them, and where a reader of the log
stands."""

from __future__ import annotations

import datetime
import uuid
from typing import Any, NamedTuple

import asyncpg
import msgspec

from eventstore.codec import AggregateEvent, decode_event


class LogPosition(NamedTuple):
    """Where a reader of the whole log stands: (transaction id, position). See log_reader.read_log."""

    tx: int
    position: int


LOG_START = LogPosition(0, 0)


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


def record_of(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(*row)
