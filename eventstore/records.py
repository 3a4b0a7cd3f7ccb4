"""An event as the log holds it: encoded into the append statement's parameters, recorded, and decoded back
into the domain's event.

Conventions are eventsourcing's own: an event class's explicit `TOPIC` is its stable type name (renaming the
class never changes it; `register_topic` keeps an old name resolvable), and `class_version` with static
`upcast_vN_vN+1` methods evolves a stored shape, exactly as the library's Mapper applies them. What differs
from the Mapper is the envelope: stream id, version and time live in columns of their own, so the payload is
just the event's own fields, encoded once by msgspec and stored as jsonb that analysts can query.

The append is one statement for any number of events and streams, and a follow-up write can ride in it (see
inline_projection.FollowUp).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import asyncpg
import msgspec
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic, resolve_topic

# What aggregates record and replay; ids are UUIDs throughout.
AggregateEvent: TypeAlias = CanMutateAggregate[uuid.UUID]

_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp"})
_encoder = msgspec.json.Encoder()


class EncodedEvent(msgspec.Struct, frozen=True):
    type: str
    schema_version: int
    payload: bytes
    version: int
    occurred_at: datetime.datetime
    # The payload as readers see it, where `payload` stores it otherwise (personal values encrypted): what the
    # append hands back, so that what it just encrypted is not decrypted again.
    readable: dict[str, Any] | None = None


_payload_fields_by_class: dict[type[Any], tuple[str, ...]] = {}


def _payload_fields(event_class: type[Any]) -> tuple[str, ...]:
    fields = _payload_fields_by_class.get(event_class)
    if fields is None:
        fields = tuple(field.name for field in dataclasses.fields(event_class) if field.name not in _ENVELOPE)
        _payload_fields_by_class[event_class] = fields
    return fields


def schema_version_of(event_class: type[Any]) -> int:
    version: int = getattr(event_class, "class_version", 1)
    return version


# What the store encrypts a payload with before it is encoded (eventstore/personal_data.py): given the org id,
# the stream id, the event's type name and its payload, the payload as it is to be stored.
PayloadSeal: TypeAlias = Callable[[uuid.UUID, uuid.UUID, str, dict[str, Any]], dict[str, Any]]


def encode_event(
    event: AggregateEvent, org_id: uuid.UUID | None = None, seal: PayloadSeal | None = None
) -> EncodedEvent:
    event_class = type(event)
    type_name = get_topic(event_class)
    payload = {name: getattr(event, name) for name in _payload_fields(event_class)}
    readable = None
    if seal is not None and org_id is not None:
        stored = seal(org_id, event.originator_id, type_name, payload)
        payload, readable = stored, (payload if stored is not payload else None)
    return EncodedEvent(
        type=type_name,
        schema_version=schema_version_of(event_class),
        payload=_encoder.encode(payload),
        version=event.originator_version,
        occurred_at=event.timestamp,
        readable=readable,
    )


def decode_event(
    type_name: str,
    schema_version: int,
    payload: Mapping[str, Any],
    stream_id: uuid.UUID,
    version: int,
    occurred_at: datetime.datetime,
) -> AggregateEvent:
    event_class = resolve_topic(type_name)
    state = dict(payload)
    target_version = schema_version_of(event_class)
    while schema_version < target_version:
        getattr(event_class, f"upcast_v{schema_version}_v{schema_version + 1}")(state)
        schema_version += 1
    state.update(originator_id=stream_id, originator_version=version, timestamp=occurred_at)
    # As the library's Mapper does: events are frozen, so the state is installed without __init__.
    event: AggregateEvent = object.__new__(event_class)
    object.__setattr__(event, "__dict__", state)
    return event


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


# One statement whatever the number of events and streams. Each row carries its stream's expected version;
# the subquery sees the log as it was before this statement, so all of a stream's rows pass or fail
# together. An expected version ahead of the stream is filtered out (it would leave a gap); a stale one
# collides with the primary key (org_id, stream_id, version), which is how the second of two concurrent
# writers with the same expected version fails. Fewer rows returned than sent means a conflict.
APPEND_ROWS = f"""
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
APPEND_ONE = f"""
INSERT INTO events (org_id, stream_id, version, type, schema_version, payload, occurred_at, actor, request_id)
SELECT $3::uuid, $4::uuid, $6::int, $7::text, $8::int, $9::jsonb, $10::timestamptz, $1::text, $2::text
WHERE (SELECT coalesce(max(version), 0) FROM events AS existing
       WHERE existing.org_id = $3::uuid AND existing.stream_id = $4::uuid) = $5::int
RETURNING {EVENT_COLUMNS}
"""
_APPEND_PARAMETERS = 10
_PLACEHOLDER = re.compile(r"\$(\d+)")


# The data keys of users whose streams the append starts (or whose first encrypted event it writes), stored in
# the append's statement: no round trip of their own, and only for streams whose rows were written, so that a
# lost race stores no key (the winner's events are encrypted with the winner's key).
_STORE_KEYS = """INSERT INTO personal_data_keys (org_id, user_id, wrapped_key)
SELECT k.org_id, k.user_id, k.wrapped_key
FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS k(org_id, user_id, wrapped_key)
WHERE EXISTS (SELECT FROM appended WHERE appended.org_id = k.org_id AND appended.stream_id = k.user_id)"""
# The same for one key (a POST's), with scalars: arrays in a statement make PostgreSQL plan it again on every
# execution (see APPEND_ONE), and this one rides in the POST's statement.
_STORE_ONE_KEY = """INSERT INTO personal_data_keys (org_id, user_id, wrapped_key)
SELECT $1::uuid, $2::uuid, $3::bytea
WHERE EXISTS (SELECT FROM appended WHERE appended.org_id = $1::uuid AND appended.stream_id = $2::uuid)"""
KEY_PARAMETERS = 3


def key_parameters(new_keys: Mapping[tuple[uuid.UUID, uuid.UUID], bytes]) -> list[Any]:
    """The parameters of the statement that stores `new_keys` (see `within_append`): scalars for one key."""
    if len(new_keys) == 1:
        [((org_id, user_id), wrapped)] = new_keys.items()
        return [org_id, user_id, wrapped]
    return [[org for org, _ in new_keys], [user for _, user in new_keys], list(new_keys.values())]


def _shifted(sql: str, by: int) -> str:
    return _PLACEHOLDER.sub(lambda match: f"${int(match[1]) + by}", sql)


# A follow-up's SQL is one of a few fixed texts, so each is composed once rather than on every write.
@functools.lru_cache(maxsize=64)
def within_append(append_sql: str, follow_up_sql: str | None, new_keys: int = 0) -> str:
    """The append with, in the same statement, `new_keys` new data keys ($11 to $13, see `key_parameters`),
    and the follow-up (its placeholders after those)."""
    if follow_up_sql is None and not new_keys:
        return append_sql
    parts = [f"appended AS ({append_sql})"]
    after = _APPEND_PARAMETERS
    if new_keys:
        parts.append(f"stored_keys AS ({_shifted(_STORE_ONE_KEY if new_keys == 1 else _STORE_KEYS, after)})")
        after += KEY_PARAMETERS
    if follow_up_sql is not None:
        parts.append(f"follow_up AS ({_shifted(follow_up_sql, after)})")
    return f"WITH {', '.join(parts)} SELECT {EVENT_COLUMNS} FROM appended"


def colliding_append(error: asyncpg.UniqueViolationError, appends: Sequence[StreamAppend]) -> StreamAppend:
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


def append_rows(
    appends: Sequence[StreamAppend], metadata: Metadata, seal: PayloadSeal | None = None
) -> tuple[list[tuple[uuid.UUID, uuid.UUID, int, EncodedEvent, Metadata]], list[Any]]:
    """The appends' events, encoded (their personal values encrypted by `seal`), and the append statement's
    parameters for them."""
    rows: list[tuple[uuid.UUID, uuid.UUID, int, EncodedEvent, Metadata]] = []
    for append in appends:
        encoded = [encode_event(event, append.org_id, seal) for event in append.events]
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


def pending_appends(
    org_id: uuid.UUID,
    aggregates: Sequence[Aggregate],
    causes: Mapping[uuid.UUID, Sequence[Metadata]] | None,
) -> list[StreamAppend]:
    appends = (
        pending_append(org_id, aggregate, causes.get(aggregate.id) if causes is not None else None)
        for aggregate in aggregates
    )
    return [append for append in appends if append]


def as_read(
    recorded: list[RecordedEvent], rows: Sequence[tuple[uuid.UUID, uuid.UUID, int, EncodedEvent, Metadata]]
) -> list[RecordedEvent]:
    """The records an append returned, with the payloads it encrypted as they were before."""
    readable = {
        (stream_id, encoded.version): encoded.readable
        for _, stream_id, _, encoded, _ in rows
        if encoded.readable is not None
    }
    if not readable:
        return recorded
    return [
        msgspec.structs.replace(record, payload=payload)
        if (payload := readable.get((record.stream_id, record.version))) is not None
        else record
        for record in recorded
    ]
