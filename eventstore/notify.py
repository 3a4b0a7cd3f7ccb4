"""Wake-ups for the log's followers: sent by the writers, after their events commit.

Followers in the writer's process are woken at once, by a call. Those in other processes (a `scimledger
worker`, other replicas) by a NOTIFY on `NOTIFY_CHANNEL`, at most one per `interval` however many commits
there were: a follower that wakes reads everything that is new. Followers poll as well, so a lost or
missing NOTIFY (the database restarting, a write made with psql) costs at most a polling interval.

A trigger on the log used to send the NOTIFY, in every appending transaction. PostgreSQL makes each
transaction that notifies take one database-wide lock at commit and hold it until the commit is on disk, so
under load appends queued on it one at a time: it was the commonest wait in pg_stat_activity under a POST
/Users load, and dropping it raised that load's throughput by a fifth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from eventstore.pool import DATABASE_UNAVAILABLE

log = logging.getLogger("scimledger.notify")

NOTIFY_CHANNEL = "scimledger_events"
# Anything that keeps a NOTIFY from being sent: the database refused it, or is away (failing over, say).
_NOT_SENT: tuple[type[Exception], ...] = (asyncpg.PostgresError, *DATABASE_UNAVAILABLE)


class CommitNotifier:
    """One per process and pool. `committed()` after a commit that appended events; `aclose()` before the pool
    closes, so that the last commits' NOTIFY is not lost."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], interval: float = 0.05) -> None:
        # The followers' own pause between batches is 0.05 s by default: notifying more often would not
        # make them read sooner.
        self._pool = pool
        self._interval = interval
        self._subscribers: list[Callable[[], None]] = []
        self._pending = False
        self._sender: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` after every commit made in this process; returns the unsubscriber."""
        self._subscribers.append(wake)
        return lambda: self._subscribers.remove(wake)

    def committed(self) -> None:
        for wake in self._subscribers:
            wake()
        self._pending = True
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="commit-notifier")

    async def _send(self) -> None:
        try:
            while self._pending:
                self._pending = False
                try:
                    await self._pool.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
                except _NOT_SENT as error:
                    # Followers elsewhere poll; a NOTIFY is only a shortcut.
                    log.debug("NOTIFY failed: %s", type(error).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._interval)
        finally:
            self._sender = None

    async def aclose(self) -> None:
        """Send what is pending now rather than after the interval, and wait until it is sent."""
        self._closing.set()
        if self._sender is not None:
            await self._sender
