"""The machinery the webhook dispatcher and the retention sweep run on (eventstore/single_active.py): one
process at a time does the work, another stands by and takes over when the first goes away, and a work that
fails is started again on a fresh connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg

from eventstore.single_active import SingleActive
from tests.integration.webhook_fixtures import eventually

log = logging.getLogger("tests.single_active")


class Recorder:
    """A work that says which of its runs is doing it, then holds the lock until cancelled (or fails once)."""

    def __init__(self, who: str, fail_first: bool = False) -> None:
        self.who = who
        self.fail_first = fail_first
        self.starts = 0
        self.working: set[str]

    async def work(self, connection: asyncpg.Connection) -> None:
        self.starts += 1
        await connection.fetchval("SELECT 1")
        if self.fail_first and self.starts == 1:
            raise ConnectionError("the database went away")
        self.working.add(self.who)
        try:
            await asyncio.Event().wait()
        finally:
            self.working.discard(self.who)


async def test_one_process_at_a_time_does_the_work_and_another_takes_over_when_it_goes(
    database_url: str,
) -> None:
    name = f"test-single-{uuid.uuid4().hex[:8]}"
    working: set[str] = set()
    first, second = Recorder("first"), Recorder("second")
    first.working = second.working = working
    one = SingleActive(name, first.work, log, standby_seconds=0.05)
    other = SingleActive(name, second.work, log, standby_seconds=0.05)
    running_one = asyncio.create_task(one.run(database_url))
    await eventually(lambda: working == {"first"}, what="the first takes the lock")
    running_other = asyncio.create_task(other.run(database_url))
    try:
        await eventually(lambda: other.state == "standby", what="the second stands by")
        assert working == {"first"}
        assert one.state == "running"
        running_one.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running_one
        await eventually(lambda: working == {"second"}, what="the second takes over")
        assert other.state == "running"
    finally:
        for task in (running_one, running_other):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_work_that_fails_starts_again_after_a_back_off(database_url: str) -> None:
    recorder = Recorder("only", fail_first=True)
    recorder.working = set()
    single = SingleActive(f"test-single-{uuid.uuid4().hex[:8]}", recorder.work, log, standby_seconds=0.05)
    task = asyncio.create_task(single.run(database_url))
    try:
        await eventually(lambda: recorder.working == {"only"}, what="the work runs again")
        assert recorder.starts == 2
        assert single.state == "running"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
