"""An event store in memory, behind the same port as eventstore/store.py's (cosmicpython's FakeRepository):
the services and reactors run on it unchanged, so their rules are tested without PostgreSQL.

It subclasses the real EventStore and Transaction, overriding only what it implements, so a renamed or
re-typed method of the port shows up here; anything else reaches `connection`, which refuses. It keeps the
contract the real store keeps (tests/integration/test_store_contract.py runs the same checks on both):
`load` replays aggregates from their encoded events and leaves unknown ids out; `save` appends each
aggregate's pending events expected where it was loaded, raising ConcurrencyConflict on a stale version, and
returns the events as the log records them; an explicit transaction's appends are visible to others only
when it ends without an error, and a transaction sees its own. It has no inline projection: tests that need
the SCIM read model belong to the integration tier.
"""

from __future__ import annotations

import datetime
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import msgspec
from eventsourcing.domain import Aggregate

from eventstore.pool import Connection
from eventstore.records import Metadata, RecordedEvent, StreamAppend, encode_event, pending_append
from eventstore.store import ConcurrencyConflict, EventStore, Transaction

_Stream = tuple[uuid.UUID, uuid.UUID]  # (org_id, stream_id): every key leads with the organization


class _NoDatabase:
    """Stands where the real transaction keeps its connection: code that reaches for SQL is not this tier's."""

    # No cipher of personal data: the in-memory log holds what the domain records (see LedgerConnection).
    personal_data = None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(
            f"the in-memory store has no database (asked for connection.{name}): test this with PostgreSQL"
        )


class FakeLog:
    """The committed log: every stream's events, in version order, and the next log position."""

    def __init__(self) -> None:
        self.streams: dict[_Stream, list[RecordedEvent]] = {}
        self.positions = itertools.count(1)

    def version(self, key: _Stream) -> int:
        return len(self.streams.get(key, []))

    @property
    def events(self) -> list[RecordedEvent]:
        """Every committed event, in log order."""
        return sorted(itertools.chain.from_iterable(self.streams.values()), key=lambda item: item.position)


class FakeTransaction(Transaction):
    """One unit of work on the in-memory log: its appends are staged and reach the log when it commits."""

    def __init__(self, log: FakeLog, autocommit: bool) -> None:
        super().__init__(cast(Connection, _NoDatabase()))
        self._log = log
        self._autocommit = autocommit
        self._staged: dict[_Stream, list[RecordedEvent]] = {}

    def _stream(self, key: _Stream) -> list[RecordedEvent]:
        return [*self._log.streams.get(key, []), *self._staged.get(key, [])]

    def commit(self) -> None:
        for key, events in self._staged.items():
            self._log.streams.setdefault(key, []).extend(events)
        self._staged = {}

    async def append_streams(
        self, appends: Sequence[StreamAppend], metadata: Metadata
    ) -> list[RecordedEvent]:
        # As the real store does: one stale stream fails the whole append, in a transaction or not.
        stale = [
            append
            for append in appends
            if append.events
            and len(self._stream((append.org_id, append.stream_id))) != append.expected_version
        ]
        recorded: list[RecordedEvent] = []
        now = datetime.datetime.now(datetime.UTC)
        for append in appends:
            if append in stale:
                continue
            causes = append.causes if append.causes is not None else [metadata] * len(append.events)
            if len(causes) != len(append.events):
                raise ValueError(
                    f"{len(append.events)} events of {append.stream_id} but {len(causes)} causes"
                )
            for index, (event, cause) in enumerate(zip(append.events, causes, strict=True)):
                encoded = encode_event(event)
                if index == 0 and encoded.version != append.expected_version + 1:
                    raise ValueError(
                        f"events of {append.stream_id} start at version {encoded.version}, "
                        f"expected {append.expected_version + 1}"
                    )
                item = RecordedEvent(
                    position=next(self._log.positions),
                    tx=0,
                    org_id=append.org_id,
                    stream_id=append.stream_id,
                    version=encoded.version,
                    type=encoded.type,
                    schema_version=encoded.schema_version,
                    payload=msgspec.json.decode(encoded.payload),
                    occurred_at=encoded.occurred_at,
                    recorded_at=now,
                    actor=cause.actor,
                    request_id=cause.request_id,
                )
                self._staged.setdefault((append.org_id, append.stream_id), []).append(item)
                recorded.append(item)
        if stale:
            self._staged = {}
            raise ConcurrencyConflict(stale[0].stream_id, stale[0].expected_version)
        self.appended = self.appended or bool(recorded)
        if self._autocommit:
            self.commit()  # each append commits on its own, as on a connection with no transaction open
        return recorded

    async def save(
        self,
        org_id: uuid.UUID,
        aggregates: Iterable[Aggregate],
        metadata: Metadata,
        causes: Mapping[uuid.UUID, Sequence[Metadata]] | None = None,
    ) -> list[RecordedEvent]:
        appends = [
            pending_append(org_id, aggregate, causes.get(aggregate.id) if causes is not None else None)
            for aggregate in aggregates
        ]
        return await self.append_streams([append for append in appends if append], metadata)

    async def read_streams(
        self, org_id: uuid.UUID, stream_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[RecordedEvent]]:
        streams = {stream_id: self._stream((org_id, stream_id)) for stream_id in stream_ids}
        return {stream_id: events for stream_id, events in streams.items() if events}

    async def load(self, org_id: uuid.UUID, stream_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Replayed from the recorded events, as the real store does: a fresh aggregate for every load."""
        aggregates: dict[uuid.UUID, Any] = {}
        for stream_id, events in (await self.read_streams(org_id, list(stream_ids))).items():
            for item in events:
                aggregates[stream_id] = item.to_domain_event().mutate(aggregates.get(stream_id))
        return aggregates

    async def lock_stream(self, stream_id: uuid.UUID) -> None:
        """Nothing to queue behind: one test drives one writer at a time."""


class FakeEventStore(EventStore):
    """The store's transactions, on a log in memory."""

    def __init__(self) -> None:
        super().__init__(cast(Any, _NoDatabase()))
        self.log = FakeLog()

    def begin(self, autocommit: bool) -> FakeTransaction:
        """Every unit of work starts here: a test that stages a race (another writer between a load and a
        save) overrides it."""
        return FakeTransaction(self.log, autocommit)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        transaction = self.begin(autocommit=False)
        yield transaction  # an exception leaves its staged appends unwritten: a rollback
        transaction.commit()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Transaction]:
        yield self.begin(autocommit=True)

    async def read_stream(self, org_id: uuid.UUID, stream_id: uuid.UUID) -> list[RecordedEvent]:
        return list(self.log.streams.get((org_id, stream_id), []))
