"""The runner: feeds the log to asynchronous projections and reactors, each exactly once in effect.

For each consumer, one task:
- holds a session advisory lock named after the consumer, so at most one process runs it (the others wait
  in standby and take over when it goes away);
- takes that lock only while its process runs fewer than its share of the consumers (their number divided by
  the live runners of the same consumers, which count each other through a shared advisory lock named after
  them), and gives it up when its process runs more, so that the consumers spread over the worker
  processes instead of all running in the first one started;
- reads the events after the consumer's position in commit-safe order (see log_reader.read_log), examining a
  batch of the log and keeping the events of its types (see log_reader.scan_log); the consumers of one runner
  share what is read (see log_reader.LogWindow), so each part of the log is read and decoded once;
- applies them and records where the batch ended in one transaction, which opens by locking and
  re-reading the position row, so a batch never applies on top of a position someone else moved (a
  rebuild);
- sleeps until a commit wakes it (see eventstore.notify), or the polling interval, when there is nothing to
  do;
- retries transient database errors with capped exponential backoff;
- on any other error, isolates the failing event by processing one event at a time, retries it, and after
  `max_attempts` parks it with the error and moves on.

What a consumer is and the transactions of a batch and a park are in eventstore/consumers.py; the positions
and parked events, and the lock, in eventstore/positions.py; rebuilds in eventstore/rebuilds.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from eventstore.consumers import Consumer, park, process_batch
from eventstore.inline_projection import InlineProjection
from eventstore.log_reader import LogWindow, read_log
from eventstore.notify import NOTIFY_CHANNEL, CommitNotifier
from eventstore.personal_data import PersonalDataCipher
from eventstore.pool import DATABASE_UNAVAILABLE, Connection, connect
from eventstore.positions import (
    announce_runner,
    close_lock_connection,
    consumer_held,
    ensure_position,
    live_runners,
    position_of,
    try_lock_consumer,
    unlock_consumer,
)
from eventstore.store import ConcurrencyConflict

log = logging.getLogger("scimledger.runner")

# Errors after which the same work may simply be tried again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_UNAVAILABLE,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    ConcurrencyConflict,
)


# Among those, the ones after which this connection is of no more use: it is gone, or its server no longer
# takes writes (the primary failed over; a new connection, made with the URL's target_session_attrs, finds
# the new one).
RECONNECT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    OSError,
)
# How many standby checks in a row a consumer must be held by nobody before a runner at its share takes it.
_RESCUE_AFTER_CHECKS = 3


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


class Runner:
    def __init__(
        self,
        dsn: str,
        consumers: Sequence[Consumer],
        options: RunnerOptions | None = None,
        notifier: CommitNotifier | None = None,
        projection: InlineProjection | None = None,
        personal_data: PersonalDataCipher | None = None,
    ) -> None:
        """`notifier` is the one this process's writers use: their commits then wake the consumers at once,
        and the reactors' commits wake the consumers of other processes too. `projection` is the inline
        projection the store is built with (see EventStore): the reactors' appends write it too.
        `personal_data`: the cipher the store's pool is made with, for the consumers' connections."""
        self._personal_data = personal_data
        self.dsn = dsn
        self.consumers = list(consumers)
        self.options = options or RunnerOptions()
        self.states = {consumer.name: ConsumerState() for consumer in self.consumers}
        self._notifier = notifier
        self._projection = projection
        self._committed = notifier.committed if notifier is not None else self._wake_all
        self._rescued: set[str] = set()
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
        return await connect(
            self.dsn,
            self._personal_data,
            server_settings={"application_name": f"scimledger-runner:{role}"[:63]},
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
                await announce_runner(connection, list(self.states))
                await connection.add_listener(NOTIFY_CHANNEL, self._wake_all)
                await lost.wait()
            finally:
                await close_lock_connection(connection)

    async def _run_consumer(self, consumer: Consumer) -> None:
        state = self.states[consumer.name]
        attempt = 0
        while True:
            try:
                connection = await self._connect(consumer.name)
                try:
                    await self._hold_lock_and_consume(connection, consumer, state)
                finally:
                    await close_lock_connection(connection)
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
        while True:
            await self._take_lock(connection, consumer, state)
            await ensure_position(connection, consumer.name)
            state.state = "running"
            await self._consume_within_share(connection, consumer, state)
            # Between batches, outside any transaction: the next holder starts where this one stopped.
            state.state = "standby"
            await unlock_consumer(connection, consumer.name)

    async def _take_lock(self, connection: Connection, consumer: Consumer, state: ConsumerState) -> None:
        """Wait until this process may run `consumer` and holds its lock: while it runs fewer than its share,
        or once nobody has held the consumer for _RESCUE_AFTER_CHECKS checks in a row (a runner that counts
        as live but cannot take locks must not leave its share unrun). A consumer taken so is kept even
        beyond the share: giving it up would only leave it unrun again."""
        self._rescued.discard(consumer.name)
        unheld_checks = 0
        while True:
            below = await self._below_share(connection)
            if (below or unheld_checks >= _RESCUE_AFTER_CHECKS) and await try_lock_consumer(
                connection, consumer.name
            ):
                if not below:
                    self._rescued.add(consumer.name)
                return
            held = below or await consumer_held(connection, consumer.name)
            unheld_checks = 0 if held else unheld_checks + 1
            state.state = "standby"
            await asyncio.sleep(self.options.standby_seconds)

    async def _consume_within_share(
        self, connection: Connection, consumer: Consumer, state: ConsumerState
    ) -> None:
        """Consume until this process runs more than its share and `consumer` is one it should give up."""
        progress = _Progress()
        loop = asyncio.get_running_loop()
        share_checked = loop.time()
        while True:
            state.wake.clear()
            examined = await self._step(connection, consumer, state, progress)
            if loop.time() - share_checked >= self.options.standby_seconds and not progress.isolating:
                share_checked = loop.time()
                if await self._beyond_share(connection, consumer):
                    return
            if examined >= self.options.batch_size or progress.isolating:
                continue  # behind the log, or isolating a failure: go on at once
            if not examined:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wake.wait(), self.options.poll_seconds)
            await asyncio.sleep(self.options.batch_delay_seconds)

    def _running(self) -> list[str]:
        return sorted(name for name, state in self.states.items() if state.state == "running")

    async def _share(self, connection: Connection) -> int:
        return math.ceil(len(self.consumers) / max(await live_runners(connection, list(self.states)), 1))

    async def _below_share(self, connection: Connection) -> bool:
        return len(self._running()) < await self._share(connection)

    async def _beyond_share(self, connection: Connection, consumer: Consumer) -> bool:
        # The same consumers in every check (the last by name), so that one runner over its share gives up
        # just its surplus, and the others it runs stay where they are.
        surplus = self._running()[await self._share(connection) :]
        return consumer.name in surplus and consumer.name not in self._rescued

    async def _step(
        self, connection: Connection, consumer: Consumer, state: ConsumerState, progress: _Progress
    ) -> int:
        limit = 1 if progress.isolating else self.options.batch_size
        try:
            batch = await process_batch(
                connection, consumer, limit, self._committed, self._log, self._projection
            )
        except TRANSIENT_ERRORS as error:
            if isinstance(error, RECONNECT_ERRORS):
                raise  # the connection is gone or useless: reconnect (and re-take the lock) from the top
            progress.attempts += 1
            state.last_error = f"{type(error).__name__}: {error}"
            await asyncio.sleep(backoff(progress.attempts, self.options))
            return 0
        except Exception as error:  # a consumer's own failure: isolate, retry, then park
            if self._personal_data is not None and isinstance(error, self._personal_data.missing):
                # This process lacks the KEK that wrapped a data key: its configuration is at fault, not the
                # event, which parking would skip for good. Back off and retry until the key is there.
                raise
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
