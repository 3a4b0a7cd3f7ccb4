"""Background work that one process at a time does, beside the runner (the webhook dispatcher, the retention
sweep): its process holds the runner's session advisory lock named after the work
(eventstore/positions.try_lock_consumer) on a connection of its own, and the others stand by, each taking the
lock when the holder goes away (its connection closed, so its session lock released).

The work is given that connection and runs until it fails or is cancelled; its failure (the database went
away, most likely) closes the connection, releasing the lock, and the whole starts over after a back-off (the
runner's, eventstore/runner.backoff) that grows with each failure in a row. The work says when it is doing
well (`working`), which starts the back-off over: a failure that comes after a long healthy run is retried at
once, a failure at every attempt waits longer each time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from eventstore.positions import close_lock_connection, try_lock_consumer
from eventstore.runner import ConsumerActivity, RunnerOptions, backoff

# The work, given the connection that holds its lock. That connection must stay alive for the lock to hold:
# a work that seldom uses it proves it alive from time to time (a failed statement ends the work).
Work = Callable[[asyncpg.Connection], Awaitable[None]]


class SingleActive:
    def __init__(
        self,
        name: str,
        work: Work,
        log: logging.Logger,
        standby_seconds: float = RunnerOptions.standby_seconds,
        options: RunnerOptions | None = None,
    ) -> None:
        self.name = name
        self._work = work
        self._log = log
        self._standby_seconds = standby_seconds
        self._options = options or RunnerOptions()
        self._failures = 0
        self.state: ConsumerActivity = "starting"

    def working(self) -> None:
        """Said by the work when it has done some: the next failure's back-off starts from the shortest."""
        self._failures = 0

    async def run(self, dsn: str) -> None:
        """Do the work whenever this process holds the lock, until cancelled."""
        while True:
            try:
                connection = await asyncpg.connect(
                    dsn, server_settings={"application_name": f"scimledger-runner:{self.name}"}
                )
                try:
                    while not await try_lock_consumer(connection, self.name):
                        self.state = "standby"
                        await asyncio.sleep(self._standby_seconds)
                    self.state = "running"
                    await self._work(connection)
                finally:
                    await close_lock_connection(connection)
            except Exception as error:  # the database went away, most likely: start over
                self._failures += 1
                self.state = "backing off"
                # The type only: a database error's message may quote a row's values, a userName among them.
                self._log.warning("%s: %s; retrying", self.name, type(error).__name__)
                await asyncio.sleep(backoff(self._failures, self._options))
