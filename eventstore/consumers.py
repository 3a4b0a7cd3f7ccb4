"""What the runner feeds: the consumers of the log (asynchronous projections and reactors), and the two
transactions a consumer's work is done in: applying a batch, and parking an event that keeps failing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from eventstore.inline_projection import InlineProjection
from eventstore.log_reader import LogScan, LogWindow, scan_log
from eventstore.personal_data import readable
from eventstore.pool import Connection
from eventstore.positions import lock_position, move_position, set_aside
from eventstore.records import RecordedEvent
from eventstore.store import Transaction


class Consumer(Protocol):
    """An asynchronous projection or a reactor."""

    @property
    def name(self) -> str: ...

    @property
    def event_types(self) -> frozenset[str] | None:
        """The event types it reads; None for every event."""

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None: ...


@runtime_checkable
class Projection(Consumer, Protocol):
    """A consumer whose whole effect can be dropped and recomputed from the log."""

    async def reset(self, connection: Connection) -> None: ...


@runtime_checkable
class Relocatable(Projection, Protocol):
    """A projection that can build its tables in another schema: what a rebuild beside the live rows needs."""

    @property
    def schema(self) -> str: ...

    @property
    def tables(self) -> tuple[str, ...]: ...

    def relocated(self, schema: str, name: str) -> Relocatable: ...


async def as_read_by(
    consumer: Consumer, connection: Connection, events: Sequence[RecordedEvent]
) -> Sequence[RecordedEvent]:
    """`events` as `consumer` reads them: decrypted (see eventstore/personal_data.py), unless it declares
    `reads_stored_payloads`: the sealer, whose seals must cover the ciphertext so that they still verify once a
    key is destroyed, and a consumer that reads no personal value (a count of events), which would only pay
    for a key query and the decryption of every profile."""
    if getattr(consumer, "reads_stored_payloads", False):
        return events
    return await readable(connection, events)


async def process_batch(
    connection: Connection,
    consumer: Consumer,
    limit: int,
    committed: Callable[[], None] | None = None,
    log: LogWindow | None = None,
    projection: InlineProjection | None = None,
) -> LogScan:
    """Apply the next batch and move the position past what was examined, in one transaction.

    `committed` is called after the commit if the consumer appended events (a reactor), to wake the others.
    `log` is the window a runner's consumers share; without it, the batch is read from the database.
    `projection` is the store's inline projection, which what a reactor appends writes as any append does.
    """
    transaction = Transaction(connection, projection)
    async with connection.transaction():
        after = await lock_position(connection, consumer.name)
        assert after is not None
        batch = await (
            log.scan(connection, after, limit, consumer.event_types)
            if log is not None
            else scan_log(connection, after, limit, consumer.event_types)
        )
        if batch.end is None:
            return batch
        if batch.events:
            await consumer.handle(transaction, await as_read_by(consumer, connection, batch.events))
        await move_position(connection, consumer.name, batch.end)
    if transaction.appended and committed is not None:
        committed()
    return batch


async def park(
    connection: Connection, consumer: Consumer, event: RecordedEvent, error: str, attempts: int
) -> None:
    """Set `event` aside with its error and move past it, in one transaction."""
    async with connection.transaction():
        await lock_position(connection, consumer.name)
        await set_aside(connection, consumer.name, event, error, attempts)
