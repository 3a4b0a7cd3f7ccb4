"""The runner: every event applied exactly once in effect, through cancellation, kills, races and poison.

Each test counts one organization's events per type with a projection of its own, and compares the
counts with the log itself, counted by SQL: a lost event or a duplicate shows as a difference.
"""

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet

from app.infrastructure.logs import JsonFormatter
from app.infrastructure.personal_data_keys import personal_data_cipher
from app.infrastructure.settings import Settings
from app.services.container import Services
from eventstore.consumers import process_batch
from eventstore.log_reader import LogScan
from eventstore.pool import Connection
from eventstore.positions import status
from eventstore.rebuilds import rebuild
from eventstore.records import Metadata, RecordedEvent
from eventstore.runner import Runner, RunnerOptions
from eventstore.store import Transaction
from tests.conftest import start_at_log_head

META = Metadata("token:runner-test")
FAST = RunnerOptions(
    batch_size=50, poll_seconds=0.05, standby_seconds=0.05, backoff_seconds=0.01, backoff_max_seconds=0.05
)


class CountingProjection:
    """Counts one org's events per type; optionally slow (to be cancelled mid-batch), poisoned, or reading
    some event types only."""

    def __init__(
        self,
        org_id: uuid.UUID,
        table: str,
        delay: float = 0.0,
        poison: str | None = None,
        event_types: frozenset[str] | None = None,
    ) -> None:
        self.event_types = event_types
        self.org_id = org_id
        self.table = table
        self.name = f"test.{table}"
        self.delay = delay
        self.poison = poison

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        mine = [event for event in events if event.org_id == self.org_id]
        for event in mine:
            if self.poison and self.poison in str(event.payload):
                # As a database error would, the message quotes the row: here, its userName.
                raise ValueError(f"cannot digest event {event.position} ({self.poison})")
        if mine:
            await transaction.connection.executemany(
                f"INSERT INTO {self.table} (type, n) VALUES ($1, 1) "
                f"ON CONFLICT (type) DO UPDATE SET n = {self.table}.n + 1",
                [(event.type,) for event in mine],
            )
        if self.delay:
            await asyncio.sleep(self.delay)  # inside the batch's transaction: a cancellation lands mid-batch

    async def reset(self, connection: Connection) -> None:
        await connection.execute(f"DELETE FROM {self.table}")


@pytest.fixture
async def counting(pool: asyncpg.Pool) -> AsyncIterator[tuple[uuid.UUID, str]]:
    org_id, table = uuid.uuid4(), f"counts_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE TABLE {table} (type text PRIMARY KEY, n bigint NOT NULL)")
    yield org_id, table
    await pool.execute(f"DROP TABLE {table}")


async def counted(pool: asyncpg.Pool, table: str) -> dict[str, int]:
    return {row["type"]: row["n"] for row in await pool.fetch(f"SELECT type, n FROM {table}")}


async def in_the_log(
    pool: asyncpg.Pool, org_id: uuid.UUID, excluding: uuid.UUID | None = None
) -> dict[str, int]:
    """The org's events per type, but for the stream `excluding` (by id: its payload's personal values are
    stored encrypted, so SQL cannot recognize them)."""
    rows = await pool.fetch(
        "SELECT type, count(*) AS n FROM events WHERE org_id = $1 AND stream_id IS DISTINCT FROM $2 GROUP BY type",
        org_id,
        excluding,
    )
    return {row["type"]: row["n"] for row in rows}


async def write_users(services: Services, org_id: uuid.UUID, count: int, prefix: str = "u") -> None:
    """Provision and then flip `count` users, four writers at a time."""
    semaphore = asyncio.Semaphore(4)

    async def one(index: int) -> None:
        async with semaphore:
            row = await services.users.provision(org_id, {"userName": f"{prefix}{index}@runner.test"}, META)
            await services.users.replace(
                org_id, row.user_id, {"userName": f"{prefix}{index}@runner.test", "active": False}, META
            )

    await asyncio.gather(*(one(index) for index in range(count)))


async def caught_up(pool: asyncpg.Pool, org_id: uuid.UUID, table: str) -> None:
    deadline = time.monotonic() + 30
    while await counted(pool, table) != await in_the_log(pool, org_id):
        assert time.monotonic() < deadline, "the runner did not catch up"
        await asyncio.sleep(0.05)


async def run_for(runner: Runner, seconds: float) -> None:
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_every_event_is_applied_once(
    services: Services, pool: asyncpg.Pool, database_url: str, counting: tuple[uuid.UUID, str]
) -> None:
    org_id, table = counting
    projection = CountingProjection(org_id, table)
    task = asyncio.create_task(Runner(database_url, [projection], FAST).run())
    try:
        await write_users(services, org_id, 60)
        await caught_up(pool, org_id, table)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await counted(pool, table) == {"UserProvisioned": 60, "UserDeactivated": 60}


async def test_a_runner_cancelled_mid_batch_again_and_again_loses_and_repeats_nothing(
    services: Services, pool: asyncpg.Pool, database_url: str, counting: tuple[uuid.UUID, str]
) -> None:
    org_id, table = counting
    slow = CountingProjection(org_id, table, delay=0.01)
    writing = asyncio.create_task(write_users(services, org_id, 120))
    chooser = random.Random(7)
    cancellations = 0
    while not writing.done() or cancellations < 10:
        await run_for(Runner(database_url, [slow], FAST), chooser.uniform(0.005, 0.06))
        cancellations += 1
    await writing
    task = asyncio.create_task(Runner(database_url, [slow], FAST).run())
    try:
        await caught_up(pool, org_id, table)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert cancellations >= 10
    live = await counted(pool, table)
    async with pool.acquire() as connection:
        await rebuild(connection, CountingProjection(org_id, table))
    assert await counted(pool, table) == live == {"UserProvisioned": 120, "UserDeactivated": 120}


async def test_two_runners_racing_for_one_projection_apply_each_event_once(
    services: Services, pool: asyncpg.Pool, database_url: str, counting: tuple[uuid.UUID, str]
) -> None:
    org_id, table = counting
    projection = CountingProjection(org_id, table)
    first, second = Runner(database_url, [projection], FAST), Runner(database_url, [projection], FAST)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await write_users(services, org_id, 80)
        await caught_up(pool, org_id, table)
        states = {first.states[projection.name].state, second.states[projection.name].state}
        assert states == {"running", "standby"}, "exactly one of the two holds the projection"
        # The one running goes away; the other takes over and carries on.
        running = tasks[0] if first.states[projection.name].state == "running" else tasks[1]
        running.cancel()
        await write_users(services, org_id, 20, prefix="late")
        await caught_up(pool, org_id, table)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert await counted(pool, table) == {"UserProvisioned": 100, "UserDeactivated": 100}


@contextlib.asynccontextmanager
async def running_with_log(runner: Runner) -> AsyncIterator[io.StringIO]:
    """`runner` running in a task, and what it logs (one JSON object a line) while it runs."""
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter(verbose=False))
    runner_log = logging.getLogger("scimledger.runner")
    runner_log.addHandler(handler)
    task = asyncio.create_task(runner.run())
    try:
        yield logged
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        runner_log.removeHandler(handler)


@pytest.mark.parametrize(
    "event_types", [None, frozenset({"UserProvisioned"})], ids=["every type", "one type"]
)
async def test_a_poison_event_is_parked_with_its_error_while_the_others_go_on(
    services: Services,
    pool: asyncpg.Pool,
    database_url: str,
    counting: tuple[uuid.UUID, str],
    event_types: frozenset[str] | None,
) -> None:
    org_id, table = counting
    poisoned = CountingProjection(org_id, table, poison="poison@runner.test", event_types=event_types)
    options = RunnerOptions(
        batch_size=50, poll_seconds=0.05, max_attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.02
    )
    await write_users(services, org_id, 10)
    poison = await services.users.provision(org_id, {"userName": "poison@runner.test"}, META)
    await write_users(services, org_id, 10, prefix="after")
    # With the service's cipher, as bootstrap builds it: the poison is a personal value, stored encrypted.
    runner = Runner(database_url, [poisoned], options, personal_data=personal_data_cipher(services.settings))
    async with running_with_log(runner) as logged:
        deadline = time.monotonic() + 20
        expected = {
            event_type: count
            for event_type, count in (await in_the_log(pool, org_id, excluding=poison.user_id)).items()
            if event_types is None or event_type in event_types
        }
        while await counted(pool, table) != expected:
            assert time.monotonic() < deadline, "the events after the poison were not applied"
            await asyncio.sleep(0.05)
    assert expected == (
        {"UserProvisioned": 20, "UserDeactivated": 20} if event_types is None else {"UserProvisioned": 20}
    )
    [parked] = await pool.fetch(
        "SELECT position, error, attempts FROM parked_events WHERE name = $1", poisoned.name
    )
    assert parked["error"] == f"ValueError: cannot digest event {parked['position']} (poison@runner.test)"
    # The log says which event failed and how, never the user it was about.
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert [line["error_type"] for line in lines if line["level"] == "error"] == ["ValueError"]
    assert "poison@runner.test" not in logged.getvalue()
    assert "poison" not in logged.getvalue()
    assert parked["attempts"] == 3
    async with pool.acquire() as connection:
        [report] = await status(connection, [poisoned])
    assert (report.parked, report.lag_events, report.running) == (1, 0, False)
    assert "cannot digest" in (report.last_parked_error or "")


async def test_a_reader_of_a_rare_type_examines_each_event_of_the_log_once(
    services: Services, pool: asyncpg.Pool, counting: tuple[uuid.UUID, str]
) -> None:
    """Its position moves past the events of other types, so it never reads the log behind it again."""
    org_id, table = counting
    rare = CountingProjection(org_id, table, event_types=frozenset({"UserDeactivated"}))
    async with pool.acquire() as connection:
        await start_at_log_head(connection, rare.name)
    users = [
        await services.users.provision(org_id, {"userName": f"rare{index}@runner.test"}, META)
        for index in range(120)
    ]

    async def drain() -> list[LogScan]:
        batches = []
        async with pool.acquire() as connection:
            while (batch := await process_batch(connection, rare, limit=50)).examined:
                batches.append(batch)
        return batches

    passed_over = await drain()
    assert [batch.examined for batch in passed_over] == [50, 50, 20]
    assert [event for batch in passed_over for event in batch.events] == []
    await services.users.replace(
        org_id, users[7].user_id, {"userName": "rare7@runner.test", "active": False}, META
    )
    [applied] = await drain()
    assert applied.examined == 1
    assert [event.type for event in applied.events] == ["UserDeactivated"]
    assert await counted(pool, table) == {"UserDeactivated": 1}


async def test_a_worker_killed_with_sigkill_resumes_and_its_projection_equals_a_rebuild(
    services: Services, pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    org_id = uuid.uuid4()
    cli = str(Path(sys.executable).parent / "scimledger")
    env = {**cli_env, "SCIMLEDGER_RUNNER_POLL_SECONDS": "0.05"}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [cli, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def activity() -> dict[tuple[str, object], int]:
        rows = await pool.fetch(
            "SELECT event_type, day, events FROM analytics.provisioning_activity WHERE org_id = $1", org_id
        )
        return {(row["event_type"], row["day"]): row["events"] for row in rows}

    async def oracle() -> dict[tuple[str, object], int]:
        rows = await pool.fetch(
            "SELECT type, (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM events "
            "WHERE org_id = $1 GROUP BY 1, 2",
            org_id,
        )
        return {(row["type"], row["day"]): row["n"] for row in rows}

    worker = start()
    try:
        writing = asyncio.create_task(write_users(services, org_id, 150))
        await asyncio.sleep(0.4)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        await writing
        # Work that only the restarted worker can do, so that catching up proves it running.
        await write_users(services, org_id, 50, prefix="after-kill")
        worker = start()
        deadline = time.monotonic() + 60

        async def everything_applied() -> bool:
            # Every consumer at the log's head, the reactors included, whose decisions are events too.
            async with pool.acquire() as connection:
                lags = [report.lag_events for report in await status(connection, services.consumers)]
            return not any(lags) and await activity() == await oracle()

        while not await everything_applied():
            assert time.monotonic() < deadline, "the restarted worker did not catch up"
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    live = await activity()
    async with pool.acquire() as connection:
        await rebuild(connection, services.consumer("analytics.provisioning_activity"))  # type: ignore[arg-type]
    assert await activity() == live
    # The worker runs the reactors too, which add events of their own; the users' own are all counted.
    assert sum(count for (event_type, _), count in live.items() if event_type == "UserProvisioned") == 200


async def test_a_runner_whose_connection_is_killed_reconnects_and_carries_on(
    services: Services, pool: asyncpg.Pool, database_url: str, counting: tuple[uuid.UUID, str]
) -> None:
    org_id, table = counting
    projection = CountingProjection(org_id, table)
    runner = Runner(database_url, [projection], FAST)
    task = asyncio.create_task(runner.run())
    try:
        await write_users(services, org_id, 10)
        await caught_up(pool, org_id, table)
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            f"scimledger-runner:{projection.name}",
        )
        assert killed == 1
        await write_users(services, org_id, 10, prefix="after")
        await caught_up(pool, org_id, table)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await counted(pool, table) == {"UserProvisioned": 20, "UserDeactivated": 20}
    assert runner.states[projection.name].state == "running"


async def test_a_runner_without_the_key_encryption_key_waits_for_it_and_parks_nothing(
    services: Services, pool: asyncpg.Pool, database_url: str, counting: tuple[uuid.UUID, str]
) -> None:
    """A worker deployed without the KEK that wrapped the data keys (SCIMLEDGER_PERSONAL_DATA_KEYS unset, or the
    old key dropped before `personal-data rewrap`) is misconfigured, and every user's event is fine: it must
    wait, saying why, and apply the events once it has the key, never park them (which skips them for good)."""
    org_id, table = counting
    projection = CountingProjection(org_id, table)
    async with pool.acquire() as connection:
        await start_at_log_head(connection, projection.name)
    await services.users.provision(org_id, {"userName": "keyless@runner.test"}, META)
    other_kek = Settings(database_url=database_url, personal_data_keys=Fernet.generate_key().decode())
    keyless = Runner(database_url, [projection], FAST, personal_data=personal_data_cipher(other_kek))
    parked_sql = "SELECT count(*) FROM parked_events WHERE name = $1"
    async with running_with_log(keyless) as logged:

        def failures() -> int:
            return sum(
                1
                for line in logged.getvalue().splitlines()
                if json.loads(line).get("consumer") == projection.name
            )

        deadline = time.monotonic() + 30
        # Well past the attempts after which a poison event is parked.
        while failures() <= FAST.max_attempts + 2 and not await pool.fetchval(parked_sql, projection.name):
            assert time.monotonic() < deadline, "the keyless runner neither failed nor parked"
            await asyncio.sleep(0.05)
    assert await pool.fetchval(parked_sql, projection.name) == 0
    # Given the key, it carries on from where it waited.
    await run_until_counted(database_url, projection, pool, org_id, table, services)


async def run_until_counted(
    database_url: str,
    projection: CountingProjection,
    pool: asyncpg.Pool,
    org_id: uuid.UUID,
    table: str,
    services: Services,
) -> None:
    keyed = Runner(database_url, [projection], FAST, personal_data=personal_data_cipher(services.settings))
    task = asyncio.create_task(keyed.run())
    try:
        await caught_up(pool, org_id, table)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
