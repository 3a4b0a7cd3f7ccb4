"""The runner's consumers spread over the live runners (one per worker process), each consumer still run by
exactly one of them, and taken over when its runner goes away (docs/scaling.md, *Many processes*).

Two Runner instances in one test process stand for two worker processes: each has its own connections, so
each holds its advisory locks in its own sessions, as a process would."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence

import asyncpg

from eventstore.positions import announce_runner
from eventstore.records import RecordedEvent
from eventstore.runner import Runner, RunnerOptions
from eventstore.store import Transaction

QUICK = RunnerOptions(poll_seconds=0.05, standby_seconds=0.05, backoff_seconds=0.01, backoff_max_seconds=0.05)


class Idle:
    """A consumer that does nothing with what it reads: here only who runs it matters."""

    event_types: frozenset[str] | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        return None


def running(runner: Runner) -> set[str]:
    return {name for name, state in runner.states.items() if state.state == "running"}


async def until(condition: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


async def holders(pool: asyncpg.Pool, names: list[str]) -> list[int]:
    """How many sessions hold each consumer's lock, by pg_locks."""
    rows = await pool.fetch(
        "SELECT count(locks.pid) AS n FROM unnest($1::text[]) WITH ORDINALITY AS consumer(name, i) "
        "LEFT JOIN pg_locks AS locks ON locks.locktype = 'advisory' AND locks.granted AND locks.objsubid = 1 "
        "AND locks.classid = ((hashtextextended('scimledger.consumer:' || consumer.name, 0) >> 32) & 4294967295)::oid "
        "AND locks.objid = (hashtextextended('scimledger.consumer:' || consumer.name, 0) & 4294967295)::oid "
        "GROUP BY consumer.i ORDER BY consumer.i",
        names,
    )
    return [row["n"] for row in rows]


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_runner_of_other_consumers_takes_no_share_of_these(database_url: str) -> None:
    names = [f"test.spread.{uuid.uuid4().hex[:8]}.{index}" for index in range(4)]
    ours = Runner(database_url, [Idle(name) for name in names], QUICK)
    other = Runner(database_url, [Idle(f"test.other.{uuid.uuid4().hex[:8]}")], QUICK)
    tasks = [asyncio.create_task(other.run())]
    try:
        await until(lambda: len(running(other)) == 1, "the other runner runs its consumer")
        tasks.append(asyncio.create_task(ours.run()))
        # Counted together, each would take half of these four, and two would run nowhere.
        await until(lambda: running(ours) == set(names), "this runner runs every one of its consumers")
    finally:
        for task in tasks:
            await stop(task)


async def test_a_runner_counted_as_live_but_running_nothing_leaves_no_consumer_unrun(
    database_url: str,
) -> None:
    names = [f"test.spread.{uuid.uuid4().hex[:8]}.{index}" for index in range(4)]
    runner = Runner(database_url, [Idle(name) for name in names], QUICK)
    # A second runner of the same consumers, as far as the count goes, that takes no lock: its process is
    # up but its consumers' connections fail.
    stuck = await asyncpg.connect(database_url)
    task: asyncio.Task[None] | None = None
    try:
        task = asyncio.create_task(runner.run())
        await until(lambda: running(runner) == set(names), "alone, the runner runs every consumer")
        await announce_runner(stuck, names)
        # Its share is now two: it gives up two, which nobody takes, and takes them back after a few checks.
        await until(lambda: len(running(runner)) < len(names), "the runner gives up its surplus")
        await until(lambda: running(runner) == set(names), "every consumer runs again")
    finally:
        if task is not None:
            await stop(task)
        await stuck.close()


async def test_the_consumers_spread_over_two_runners_and_one_takes_them_all_when_the_other_goes(
    database_url: str, pool: asyncpg.Pool
) -> None:
    names = sorted(f"test.spread.{uuid.uuid4().hex[:8]}.{index}" for index in range(4))
    consumers = [Idle(name) for name in names]
    first, second = Runner(database_url, consumers, QUICK), Runner(database_url, consumers, QUICK)
    first_task = asyncio.create_task(first.run())
    second_task: asyncio.Task[None] | None = None
    try:
        # Alone, the first runs everything: its share is all of them.
        await until(lambda: running(first) == set(names), "the first runner runs every consumer")
        second_task = asyncio.create_task(second.run())
        # Two live runners: the first gives up its surplus, the second takes it.
        await until(
            lambda: len(running(first)) == 2 and len(running(second)) == 2,
            "two consumers each",
        )
        assert running(first) | running(second) == set(names)
        assert not running(first) & running(second)
        assert await holders(pool, names) == [1, 1, 1, 1], "one session holds each consumer"
        # The first goes away: the second takes over its consumers.
        await stop(first_task)
        await until(lambda: running(second) == set(names), "the second runner runs every consumer")
        assert await holders(pool, names) == [1, 1, 1, 1]
    finally:
        await stop(first_task)
        if second_task is not None:
            await stop(second_task)
