"""Writers wake the log's followers: in their process at once, elsewhere by a coalesced NOTIFY."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from app.services.container import Services
from domain.users import User
from eventstore.notify import NOTIFY_CHANNEL, CommitNotifier
from eventstore.records import Metadata, RecordedEvent
from eventstore.runner import Runner, RunnerOptions
from eventstore.store import EventStore, Transaction
from tests.conftest import start_at_log_head

META = Metadata("token:notify-test")
# Polling too slowly to matter within a test: whatever a follower reads here, a wake-up made it read.
NO_POLLING = RunnerOptions(poll_seconds=60, batch_delay_seconds=0.01)


@pytest.fixture
async def notifications(database_url: str) -> AsyncIterator[list[float]]:
    """The times at which NOTIFYs on the channel arrive at a listener of its own."""
    arrived: list[float] = []
    connection = await asyncpg.connect(database_url)
    await connection.add_listener(NOTIFY_CHANNEL, lambda *_: arrived.append(time.monotonic()))
    yield arrived
    await connection.close()


async def provision(store: EventStore) -> None:
    user = User(org_id=str(uuid.uuid4()), attributes={"userName": "n@notify.test"}, active=True)
    async with store.autocommit() as transaction:
        await transaction.save(uuid.UUID(user.org_id), [user], META)


async def test_a_burst_of_commits_sends_few_notifies_and_one_after_the_last_commit(
    pool: asyncpg.Pool, notifications: list[float]
) -> None:
    notifier = CommitNotifier(pool, interval=0.2)
    store = EventStore(pool, notifier)
    await asyncio.gather(*(provision(store) for _ in range(30)))
    last_commit = time.monotonic()
    await asyncio.sleep(0.6)
    await notifier.aclose()
    assert 1 <= len(notifications) <= 3, "one NOTIFY at once, then at most one per interval"
    assert max(notifications) > last_commit, "a follower woken before the last commit would not see it"


async def test_closing_sends_what_is_pending_without_waiting_for_the_interval(
    pool: asyncpg.Pool, notifications: list[float]
) -> None:
    notifier = CommitNotifier(pool, interval=30)
    store = EventStore(pool, notifier)
    await provision(store)
    await provision(store)  # within the interval: pending
    started = time.monotonic()
    await notifier.aclose()
    await asyncio.sleep(0.2)
    assert time.monotonic() - started < 5
    assert len(notifications) == 2


async def test_only_committed_appends_wake_this_processs_followers(pool: asyncpg.Pool) -> None:
    notifier = CommitNotifier(pool)
    wakes: list[None] = []
    notifier.subscribe(lambda: wakes.append(None))
    store = EventStore(pool, notifier)
    async with store.transaction() as transaction:
        await transaction.connection.fetchval("SELECT count(*) FROM events")
    assert wakes == [], "nothing was appended"

    async def append_then_fail() -> None:
        async with store.transaction() as transaction:
            user = User(org_id=str(uuid.uuid4()), attributes={"userName": "r@notify.test"}, active=True)
            await transaction.save(uuid.UUID(user.org_id), [user], META)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await append_then_fail()
    assert wakes == [], "the append rolled back"
    await provision(store)
    assert wakes == [None]
    await notifier.aclose()


class Recorder:
    """Remembers the streams it was given."""

    name = "test.notify-recorder"
    event_types = None

    def __init__(self) -> None:
        self.seen: set[uuid.UUID] = set()

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        self.seen.update(event.stream_id for event in events)


@pytest.mark.parametrize("where", ["this process", "another process"])
async def test_a_follower_that_does_not_poll_reads_a_commit_within_a_second(
    services: Services, pool: asyncpg.Pool, database_url: str, where: str
) -> None:
    recorder = Recorder()
    # In another process the runner knows nothing of the writer's notifier: only its NOTIFY reaches it.
    notifier = services.notifier if where == "this process" else None
    async with pool.acquire() as connection:
        await start_at_log_head(connection, recorder.name)
    task = asyncio.create_task(Runner(database_url, [recorder], NO_POLLING, notifier).run())
    try:
        await asyncio.sleep(0.5)  # running, and caught up with the log
        row = await services.users.provision(uuid.uuid4(), {"userName": "w@notify.test"}, META)
        deadline = time.monotonic() + 1
        while row.user_id not in recorder.seen:
            assert time.monotonic() < deadline, f"not woken in {where}"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
