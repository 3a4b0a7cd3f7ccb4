"""The runner: feeds the log to asynchronous projections and reactors, each exactly once in effect.

For each consumer, one task:
- holds a session advisory lock named after the consumer, so at most one process runs it (the others wait
  in standby and take over when it goes away);
- reads the events after the consumer's position in commit-safe order (see store.read_log), examining a
  batch of the log and keeping the events of its types (see store.scan_log); the consumers of one runner
  share what is read (see store.LogWindow), so each part of the log is read and decoded once;
- applies them and records where the batch ended in one transaction, which opens by locking and
  re-reading the position row, so a batch never applies on top of a position someone else moved (a
  rebuild);
- sleeps until a commit wakes it (see eventstore.notify), or the polling interval, when there is nothing to
  do;
- retries transient database errors with capped exponential backoff;
- on any other error, isolates the failing event by processing one event at a time, retries it, and after
  `max_attempts` parks it with the error and moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import asyncpg

from eventstore.notify import NOTIFY_CHANNEL, CommitNotifier
from eventstore.pool import DATABASE_UNAVAILABLE, Connection, init_connection
from eventstore.store import (
    ConcurrencyConflict,
    InlineProjection,
    LogPosition,
    LogScan,
    LogWindow,
    RecordedEvent,
    Transaction,
    read_log,
    scan_log,
)

log = logging.getLogger("scimledger.runner")

_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('scimledger.consumer:' || $1::text, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('scimledger.consumer:' || $1::text, 0))"
# Whether some session holds a consumer's lock, read from pg_locks without taking it: probing by taking it
# could leave it taken on a pooled connection if the probe were cancelled halfway, stalling that consumer.
# A bigint advisory key shows as its high and low 32 bits in classid and objid, with objsubid 1.
_HELD = """
SELECT EXISTS (
    SELECT FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = ((key >> 32) & 4294967295)::oid AND objid = (key & 4294967295)::oid
)
FROM (SELECT hashtextextended('scimledger.consumer:' || $1::text, 0) AS key) AS consumer
"""

# Errors after which the same work may simply be tried again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_UNAVAILABLE,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    ConcurrencyConflict,
)


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


@dataclass(frozen=True)
class RunnerOptions:
    batch_size: int = 500
    poll_seconds: float = 1.0
    # How long a consumer that has caught up waits before reading again. Under load every commit sends a
    # NOTIFY; without this pause each one would cost every consumer a transaction of its own for a batch of
    # one or two events. With it, a busy log is read in batches, at the price of this much added lag.
    batch_delay_seconds: float = 0.05
    standby_seconds: float = 2.0
    max_attempts: int = 3
    backoff_seconds: float = 0.1
    backoff_max_seconds: float = 5.0


@dataclass
class _Progress:
    isolating: bool = False
    failing_position: int | None = None
    attempts: int = 0


# What a consumer is doing in this process's runner: starting; standby (another process holds its lock);
# running; backing off after an error.
ConsumerActivity = Literal["starting", "standby", "running", "backing off"]


@dataclass
class ConsumerState:
    state: ConsumerActivity = "starting"
    last_error: str | None = None
    processed: int = 0
    parked: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def backoff(attempt: int, options: RunnerOptions) -> float:
    capped: float = min(options.backoff_max_seconds, options.backoff_seconds * 2 ** (attempt - 1))
    return capped * (0.5 + random.random() / 2)


async def position_of(connection: Connection, name: str) -> LogPosition:
    row = await connection.fetchrow("SELECT tx, position FROM consumer_positions WHERE name = $1", name)
    return LogPosition(row["tx"], row["position"]) if row is not None else LogPosition(0, 0)


async def ensure_position(connection: Connection, name: str) -> None:
    await connection.execute("INSERT INTO consumer_positions (name) VALUES ($1) ON CONFLICT DO NOTHING", name)


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
        row = await connection.fetchrow(
            "SELECT tx, position FROM consumer_positions WHERE name = $1 FOR UPDATE", consumer.name
        )
        assert row is not None
        after = LogPosition(row["tx"], row["position"])
        batch = await (
            log.scan(connection, after, limit, consumer.event_types)
            if log is not None
            else scan_log(connection, after, limit, consumer.event_types)
        )
        if batch.end is None:
            return batch
        if batch.events:
            await consumer.handle(transaction, batch.events)
        await connection.execute(
            "UPDATE consumer_positions SET tx = $2, position = $3, updated_at = now() WHERE name = $1",
            consumer.name,
            batch.end.tx,
            batch.end.position,
        )
    if transaction.appended and committed is not None:
        committed()
    return batch


async def park(
    connection: Connection, consumer: Consumer, event: RecordedEvent, error: str, attempts: int
) -> None:
    """Set `event` aside with its error and move past it, in one transaction."""
    async with connection.transaction():
        await connection.fetchrow(
            "SELECT 1 FROM consumer_positions WHERE name = $1 FOR UPDATE", consumer.name
        )
        await connection.execute(
            "INSERT INTO parked_events (name, position, tx, error, attempts) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (name, position) DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts",
            consumer.name,
            event.position,
            event.tx,
            error,
            attempts,
        )
        await connection.execute(
            "UPDATE consumer_positions SET tx = $2, position = $3, updated_at = now() "
            "WHERE name = $1 AND (tx, position) < ($2::xid8, $3::bigint)",
            consumer.name,
            event.tx,
            event.position,
        )


class Runner:
    def __init__(
        self,
        dsn: str,
        consumers: Sequence[Consumer],
        options: RunnerOptions | None = None,
        notifier: CommitNotifier | None = None,
        projection: InlineProjection | None = None,
    ) -> None:
        """`notifier` is the one this process's writers use: their commits then wake the consumers at once,
        and the reactors' commits wake the consumers of other processes too. `projection` is the inline
        projection the store is built with (see EventStore): the reactors' appends write it too."""
        self.dsn = dsn
        self.consumers = list(consumers)
        self.options = options or RunnerOptions()
        self.states = {consumer.name: ConsumerState() for consumer in self.consumers}
        self._notifier = notifier
        self._projection = projection
        self._committed = notifier.committed if notifier is not None else self._wake_all
        # Room for every consumer's next batch while they are a few batches apart.
        self._log = LogWindow(capacity=4 * self.options.batch_size)

    async def run(self) -> None:
        """Run every consumer until cancelled."""
        unsubscribe = self._notifier.subscribe(self._wake_all) if self._notifier is not None else None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._listen())
                for consumer in self.consumers:
                    group.create_task(self._run_consumer(consumer))
        finally:
            if unsubscribe is not None:
                unsubscribe()

    async def _connect(self, role: str) -> asyncpg.Connection:
        # Named, so that pg_stat_activity shows which connection serves which consumer.
        return await asyncpg.connect(
            self.dsn, server_settings={"application_name": f"scimledger-runner:{role}"[:63]}
        )

    def _wake_all(self, *_: object) -> None:
        for state in self.states.values():
            state.wake.set()

    async def _listen(self) -> None:
        """Turn other processes' NOTIFYs (see eventstore.notify) into wake-ups; polling covers the time this
        connection is down."""
        attempt = 0
        while True:
            try:
                connection = await self._connect("listener")
            except TRANSIENT_ERRORS:
                attempt += 1
                await asyncio.sleep(backoff(attempt, self.options))
                continue
            attempt = 0
            lost = asyncio.Event()
            connection.add_termination_listener(_setting(lost))
            try:
                await connection.add_listener(NOTIFY_CHANNEL, self._wake_all)
                await lost.wait()
            finally:
                await _close(connection)

    async def _run_consumer(self, consumer: Consumer) -> None:
        state = self.states[consumer.name]
        attempt = 0
        while True:
            try:
                connection = await self._connect(consumer.name)
                await init_connection(connection)
                try:
                    await self._hold_lock_and_consume(connection, consumer, state)
                finally:
                    await _close(connection)
            except Exception as error:  # transient (the database went away) or not: back off, start over
                attempt += 1
                state.state, state.last_error = "backing off", f"{type(error).__name__}: {error}"
                # The type only: a database error's message quotes row values, userNames included. The
                # message is kept in `projections status` and, at debug level, in the log.
                log.warning(
                    "%s: %s; retrying", consumer.name, type(error).__name__, extra=_failure(consumer, error)
                )
                log.debug("%s: %s", consumer.name, state.last_error)
                await asyncio.sleep(backoff(attempt, self.options))

    async def _hold_lock_and_consume(
        self, connection: Connection, consumer: Consumer, state: ConsumerState
    ) -> None:
        while not await connection.fetchval(_LOCK, consumer.name):
            state.state = "standby"
            await asyncio.sleep(self.options.standby_seconds)
        await ensure_position(connection, consumer.name)
        state.state = "running"
        progress = _Progress()
        while True:
            state.wake.clear()
            examined = await self._step(connection, consumer, state, progress)
            if examined >= self.options.batch_size or progress.isolating:
                continue  # behind the log, or isolating a failure: go on at once
            if not examined:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wake.wait(), self.options.poll_seconds)
            await asyncio.sleep(self.options.batch_delay_seconds)

    async def _step(
        self, connection: Connection, consumer: Consumer, state: ConsumerState, progress: _Progress
    ) -> int:
        limit = 1 if progress.isolating else self.options.batch_size
        try:
            batch = await process_batch(
                connection, consumer, limit, self._committed, self._log, self._projection
            )
        except TRANSIENT_ERRORS as error:
            if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError):
                raise  # the connection is gone: reconnect (and re-take the lock) from the top
            progress.attempts += 1
            state.last_error = f"{type(error).__name__}: {error}"
            await asyncio.sleep(backoff(progress.attempts, self.options))
            return 0
        except Exception as error:  # a consumer's own failure: isolate, retry, then park
            if not progress.isolating:
                progress.isolating, progress.attempts = True, 0
                return 1  # go again at once, one event at a time
            return await self._retry_or_park(connection, consumer, state, progress, error)
        if progress.isolating and batch.events:
            progress.isolating, progress.attempts, progress.failing_position = False, 0, None
        state.processed += len(batch.events)
        state.last_error = None if batch.examined else state.last_error
        return batch.examined

    async def _retry_or_park(
        self,
        connection: Connection,
        consumer: Consumer,
        state: ConsumerState,
        progress: _Progress,
        error: Exception,
    ) -> int:
        [failing] = await read_log(
            connection, await position_of(connection, consumer.name), 1, consumer.event_types
        )
        progress.attempts = progress.attempts + 1 if progress.failing_position == failing.position else 1
        progress.failing_position = failing.position
        message = f"{type(error).__name__}: {error}"
        state.last_error = message
        if progress.attempts < self.options.max_attempts:
            log.warning(
                "%s: event %d failed (%s), attempt %d",
                consumer.name,
                failing.position,
                type(error).__name__,
                progress.attempts,
                extra=_failure(consumer, error),
            )
            log.debug("%s: event %d: %s", consumer.name, failing.position, message)
            await asyncio.sleep(backoff(progress.attempts, self.options))
            return 0
        log.error(
            "%s: parking event %d after %d attempts (%s); its error is in parked_events",
            consumer.name,
            failing.position,
            progress.attempts,
            type(error).__name__,
            extra=_failure(consumer, error),
        )
        await park(connection, consumer, failing, message, progress.attempts)
        state.parked += 1
        progress.isolating, progress.attempts, progress.failing_position = False, 0, None
        return 1


def _failure(consumer: Consumer, error: BaseException) -> dict[str, str]:
    return {"consumer": consumer.name, "error_type": type(error).__name__}


def _setting(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _: event.set()


async def _close(connection: asyncpg.Connection) -> None:
    try:
        await asyncio.shield(connection.close(timeout=2))
    except Exception:  # closing a broken connection may fail; it is being dropped anyway
        connection.terminate()


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    name: str
    position: int
    lag_events: int
    lag_seconds: float
    running: bool
    parked: int
    last_parked_error: str | None


async def status(connection: Connection, consumers: Sequence[Consumer]) -> list[ConsumerStatus]:
    """Where each consumer stands, how far behind it is, whether some process runs it, what it parked."""
    result = []
    for consumer in consumers:
        after = await position_of(connection, consumer.name)
        types = sorted(consumer.event_types) if consumer.event_types is not None else None
        lag = await connection.fetchrow(
            "SELECT count(*) AS events, extract(epoch FROM now() - min(recorded_at)) AS seconds FROM events "
            "WHERE (tx, position) > ($1::xid8, $2::bigint) AND ($3::text[] IS NULL OR type = ANY($3::text[]))",
            after.tx,
            after.position,
            types,
        )
        assert lag is not None
        running = await connection.fetchval(_HELD, consumer.name)
        parked = await connection.fetchrow(
            "SELECT count(*) AS parked, (SELECT error FROM parked_events WHERE name = $1 ORDER BY parked_at DESC "
            "LIMIT 1) AS error FROM parked_events WHERE name = $1",
            consumer.name,
        )
        assert parked is not None
        result.append(
            ConsumerStatus(
                consumer.name,
                after.position,
                lag["events"],
                float(lag["seconds"] or 0.0),
                running,
                parked["parked"],
                parked["error"],
            )
        )
    return result


async def rebuild(connection: Connection, projection: Projection, batch_size: int = 5000) -> int:
    """Recompute `projection` from the whole log, in one transaction; returns the events replayed.

    Locking the position row first makes a running instance's next batch wait, then start from the
    rebuilt position.
    """
    async with connection.transaction():
        await ensure_position(connection, projection.name)
        await connection.fetchrow(
            "SELECT 1 FROM consumer_positions WHERE name = $1 FOR UPDATE", projection.name
        )
        await projection.reset(connection)
        await connection.execute(
            "UPDATE consumer_positions SET tx = '0', position = 0 WHERE name = $1", projection.name
        )
        await connection.execute("DELETE FROM parked_events WHERE name = $1", projection.name)
        replayed = 0
        started = time.monotonic()
        while True:
            after = await position_of(connection, projection.name)
            events = await read_log(connection, after, batch_size, projection.event_types)
            if not events:
                break
            await projection.handle(Transaction(connection), events)
            await connection.execute(
                "UPDATE consumer_positions SET tx = $2, position = $3, updated_at = now() WHERE name = $1",
                projection.name,
                events[-1].tx,
                events[-1].position,
            )
            replayed += len(events)
        log.info("rebuilt %s from %d events in %.1f s", projection.name, replayed, time.monotonic() - started)
        return replayed


@runtime_checkable
class Relocatable(Projection, Protocol):
    """A projection that can build its tables in another schema: what a rebuild beside the live rows needs."""

    @property
    def schema(self) -> str: ...

    @property
    def tables(self) -> tuple[str, ...]: ...

    def relocated(self, schema: str, name: str) -> Relocatable: ...


SHADOW_SCHEMA = "scimledger_rebuild"
_RETIRED_SCHEMA = "scimledger_retired"


async def rebuild_beside(
    connection: Connection,
    projection: Relocatable,
    batch_size: int = 5000,
    before_swap: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Rebuild `projection` without downtime; returns the events replayed.

    New tables are built in a schema of their own, in short batches (so that no long transaction holds the
    log's tailing readers back), while readers keep reading the live tables and the live runner keeps
    applying to them. Then one short transaction waits for the live runner's batch, brings the new tables up
    to the log's head, puts them in place of the old ones with the old ones' grants, and hands the position
    over. Readers see the old rows until that transaction commits.
    """
    name = f"rebuild:{projection.name}"
    if not await connection.fetchval(_LOCK, name):
        raise RuntimeError(f"Another rebuild of {projection.name} is running.")
    try:
        shadow = projection.relocated(SHADOW_SCHEMA, f"{projection.name}#rebuild")
        await connection.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
        await connection.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
        for table in projection.tables:
            await connection.execute(
                f"CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE {projection.schema}.{table} INCLUDING ALL)"
            )
        await ensure_position(connection, shadow.name)
        await connection.execute(
            "UPDATE consumer_positions SET tx = '0', position = 0 WHERE name = $1", shadow.name
        )
        replayed = 0
        started = time.monotonic()
        while (batch := await process_batch(connection, shadow, batch_size)).examined:
            replayed += len(batch.events)
        if before_swap is not None:
            await before_swap()
        async with connection.transaction():
            await ensure_position(connection, projection.name)
            await connection.fetchrow(
                "SELECT 1 FROM consumer_positions WHERE name = $1 FOR UPDATE", projection.name
            )
            while (batch := await process_batch(connection, shadow, batch_size)).examined:
                replayed += len(batch.events)
            await connection.execute(f"DROP SCHEMA IF EXISTS {_RETIRED_SCHEMA} CASCADE")
            await connection.execute(f"CREATE SCHEMA {_RETIRED_SCHEMA}")
            for table in projection.tables:
                grants = await connection.fetch(
                    "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                    "WHERE table_schema = $1 AND table_name = $2 AND grantee <> current_user",
                    projection.schema,
                    table,
                )
                await connection.execute(
                    f"ALTER TABLE {projection.schema}.{table} SET SCHEMA {_RETIRED_SCHEMA}"
                )
                await connection.execute(
                    f"ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA {projection.schema}"
                )
                for grantee, privilege in grants:
                    await connection.execute(
                        f'GRANT {privilege} ON {projection.schema}.{table} TO "{grantee}"'
                    )
            built = await position_of(connection, shadow.name)
            await connection.execute(
                "UPDATE consumer_positions SET tx = $2, position = $3, updated_at = now() WHERE name = $1",
                projection.name,
                built.tx,
                built.position,
            )
            await connection.execute("DELETE FROM consumer_positions WHERE name = $1", shadow.name)
            await connection.execute("DELETE FROM parked_events WHERE name = $1", projection.name)
            await connection.execute(f"DROP SCHEMA {_RETIRED_SCHEMA} CASCADE")
            await connection.execute(f"DROP SCHEMA {SHADOW_SCHEMA} CASCADE")
        log.info(
            "rebuilt %s beside the live rows from %d events in %.1f s",
            projection.name,
            replayed,
            time.monotonic() - started,
        )
        return replayed
    finally:
        await connection.fetchval(_UNLOCK, name)
