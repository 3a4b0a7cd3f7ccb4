"""Domain events to stored rows and back.

Conventions are eventsourcing's own: an event class's explicit `TOPIC` is its stable type name (renaming the
class never changes it; `register_topic` keeps an old name resolvable), and `class_version` with static
`upcast_vN_vN+1` methods evolves a stored shape, exactly as the library's Mapper applies them. What differs
from the Mapper is the envelope: stream id, version and time live in columns of their own, so the payload is
just the event's own fields, encoded once by msgspec and stored as jsonb that analysts can query.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Mapping
from typing import Any, TypeAlias

import msgspec
from eventsourcing.domain import CanMutateAggregate
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


def encode_event(event: AggregateEvent) -> EncodedEvent:
    event_class = type(event)
    payload = {name: getattr(event, name) for name in _payload_fields(event_class)}
    return EncodedEvent(
        type=get_topic(event_class),
        schema_version=schema_version_of(event_class),
        payload=_encoder.encode(payload),
        version=event.originator_version,
        occurred_at=event.timestamp,
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
