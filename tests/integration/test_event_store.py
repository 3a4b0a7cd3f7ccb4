import asyncio
import random
import uuid
from typing import Any

import asyncpg
import pytest

from domain.users import User
from eventstore import log_reader
from eventstore import store as store_module
from eventstore.log_reader import LogWindow, scan_log
from eventstore.pool import create_pool
from eventstore.records import Metadata, RecordedEvent
from eventstore.store import ConcurrencyConflict, EventStore, Transaction
from tests.conftest import log_head, log_tail

META = Metadata(actor="token:test", request_id="req-1")


def new_user(user_name: str = "bob") -> tuple[User, list[Any]]:
    user = User(org_id=str(uuid.uuid4()), attributes={"userName": user_name}, active=True)
    return user, user.collect_events()


async def test_append_then_read_the_stream_back_with_its_metadata(store: EventStore) -> None:
    user, events = new_user()
    user.replace({"userName": "bob", "title": "T"}, active=False)
    events += user.collect_events()
    org_id = uuid.UUID(user.org_id)
    recorded = await store.append(org_id, user.id, 0, events, META)
    assert [item.version for item in recorded] == [1, 2, 3]
    stream = await store.read_stream(org_id, user.id)
    assert recorded == stream, "an append returns its events as the log reads them back"
    assert [(item.type, item.version, item.schema_version) for item in stream] == [
        ("UserProvisioned", 1, 2),
        ("UserProfileUpdated", 2, 1),
        ("UserDeactivated", 3, 2),
    ]
    first = stream[0]
    assert (first.org_id, first.stream_id, first.actor, first.request_id) == (
        org_id,
        user.id,
        "token:test",
        "req-1",
    )
    assert first.occurred_at == events[0].timestamp
    assert first.payload["attributes"] == {"userName": "bob"}
    replayed = None
    for item in stream:
        replayed = item.to_domain_event().mutate(replayed)
    assert isinstance(replayed, User)
    assert (replayed.attributes, replayed.active, replayed.version) == (
        {"userName": "bob", "title": "T"},
        False,
        3,
    )


async def test_a_transaction_reads_back_the_events_it_appended_itself(pool: asyncpg.Pool) -> None:
    """Reads leave out events whose `tx` no transaction was given (store.ASSIGNED_TX), judged by the snapshot's
    xmax: one past the latest transaction to complete. A transaction's own id is not below it when its
    snapshot was taken before it had an id, as under REPEATABLE READ; its own events are read all the same."""
    user, events = new_user()
    org_id = uuid.UUID(user.org_id)
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        transaction = Transaction(connection)
        recorded = await transaction.append(org_id, user.id, 0, events, META)
        own_id_beyond_the_snapshot = await connection.fetchval(
            "SELECT pg_current_xact_id_if_assigned() >= pg_snapshot_xmax(pg_current_snapshot())"
        )
        assert own_id_beyond_the_snapshot, "the case in point: the snapshot predates the transaction's id"
        assert await transaction.read_stream(org_id, user.id) == recorded


async def test_a_one_event_append_returns_it_as_the_log_reads_it_back(store: EventStore) -> None:
    user, events = new_user("ann")
    org_id = uuid.UUID(user.org_id)
    recorded = await store.append(org_id, user.id, 0, events, META)
    assert recorded == await store.read_stream(org_id, user.id)
    assert recorded[0].payload["attributes"] == {"userName": "ann"}


async def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(store: EventStore) -> None:
    user, events = new_user()
    org_id = uuid.UUID(user.org_id)
    await store.append(org_id, user.id, 0, events, META)
    user.set_active(False)
    first_writer = user.collect_events()
    await store.append(org_id, user.id, 1, first_writer, META)
    with pytest.raises(ConcurrencyConflict):
        await store.append(org_id, user.id, 1, first_writer, META)
    assert [item.version for item in await store.read_stream(org_id, user.id)] == [1, 2]


async def test_an_expected_version_ahead_of_the_stream_is_a_conflict(store: EventStore) -> None:
    user, events = new_user()
    org_id = uuid.UUID(user.org_id)
    await store.append(org_id, user.id, 0, events, META)
    user.set_active(False)
    user.set_active(True)
    skipped = user.collect_events()[1:]  # version 3, while the stream is at 1
    with pytest.raises(ConcurrencyConflict):
        await store.append(org_id, user.id, 2, skipped, META)
    assert [item.version for item in await store.read_stream(org_id, user.id)] == [1]


# One event and several take different statements (see appends.APPEND_ONE).
@pytest.mark.parametrize("flips", [1, 2])
async def test_concurrent_writers_with_the_same_expected_version_one_wins(
    store: EventStore, flips: int
) -> None:
    user, events = new_user()
    org_id = uuid.UUID(user.org_id)
    await store.append(org_id, user.id, 0, events, META)
    for flip in range(flips):
        user.set_active(flip % 2 == 1)
    changes = user.collect_events()
    results = await asyncio.gather(
        *(store.append(org_id, user.id, 1, changes, META) for _ in range(10)), return_exceptions=True
    )
    assert sum(isinstance(result, list) for result in results) == 1
    assert sum(isinstance(result, ConcurrencyConflict) for result in results) == 9
    assert [item.version for item in await store.read_stream(org_id, user.id)] == list(range(1, flips + 2))


async def test_a_one_event_append_is_planned_once_per_connection(database_url: str) -> None:
    """PostgreSQL would otherwise plan it anew on every execution, which cost more than running it."""
    one_connection = await create_pool(database_url, min_size=1, max_size=1)
    try:
        store = EventStore(one_connection)
        for _ in range(8):
            user, events = new_user()
            await store.append(uuid.UUID(user.org_id), user.id, 0, events, META)
        plans = await one_connection.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%INSERT INTO events%' AND statement NOT LIKE '%pg_prepared%'"
        )
    finally:
        await one_connection.close()
    assert plans is not None
    assert (plans["custom_plans"], plans["generic_plans"]) == (5, 3)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET actor = 'mallory' WHERE stream_id = $1",
        "DELETE FROM events WHERE stream_id = $1",
    ],
)
async def test_the_database_refuses_to_change_or_delete_events(
    store: EventStore, pool: asyncpg.Pool, statement: str
) -> None:
    user, events = new_user()
    await store.append(uuid.UUID(user.org_id), user.id, 0, events, META)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute(statement, user.id)
    assert len(await store.read_stream(uuid.UUID(user.org_id), user.id)) == 1


async def test_the_database_refuses_to_truncate_the_log(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("TRUNCATE events")


async def test_a_stored_version_1_event_is_read_back_upcast(store: EventStore, pool: asyncpg.Pool) -> None:
    org_id, stream_id = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO events (org_id, stream_id, version, type, schema_version, payload, occurred_at, actor) "
        "VALUES ($1, $2, 1, 'UserProvisioned', 1, $3, now(), 'legacy')",
        org_id,
        stream_id,
        {
            "originator_topic": "User",
            "org_id": str(org_id),
            "attributes": {"userName": "old"},
            "active": True,
            "email": "old@example.com",
        },
    )
    [recorded] = await store.read_stream(org_id, stream_id)
    user = recorded.to_domain_event().mutate(None)
    assert isinstance(user, User)
    assert user.attributes["emails"] == [{"value": "old@example.com", "type": "work", "primary": True}]


async def test_a_tailing_reader_misses_and_repeats_nothing_while_8_writers_commit_out_of_order(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    writers, per_writer = 8, 1000
    org_id = uuid.uuid4()
    async with pool.acquire() as connection:
        start = await log_head(connection)
    written: set[tuple[uuid.UUID, int]] = set()
    done = asyncio.Event()

    async def writer(seed: int) -> None:
        chooser = random.Random(seed)
        stream_id = uuid.uuid4()
        user = User(org_id=str(org_id), attributes={"userName": f"w{seed}"}, active=True)
        for _ in range(per_writer - 1):
            user.set_active(not user.active)
        events = user.collect_events()
        for event in events:
            async with store.transaction() as transaction:
                await transaction.append(org_id, stream_id, event.originator_version - 1, [event], META)
                # Hold the transaction open a little, so positions taken earlier commit later.
                if chooser.random() < 0.3:
                    await asyncio.sleep(chooser.random() * 0.002)
            written.add((stream_id, event.originator_version))

    seen: list[RecordedEvent] = []

    async def reader() -> None:
        position = start
        while True:
            finished = done.is_set()
            batch = await store.read_log(position, limit=500)
            seen.extend(item for item in batch if item.org_id == org_id)
            if batch:
                position = batch[-1].log_position
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(seed) for seed in range(writers)))
    done.set()
    await asyncio.wait_for(reading, timeout=60)

    keys = [(item.stream_id, item.version) for item in seen]
    assert len(keys) == writers * per_writer
    assert len(set(keys)) == len(keys), "an event was delivered twice"
    assert set(keys) == written, "an event was skipped"
    for stream_id in {key[0] for key in keys}:
        versions = [version for sid, version in keys if sid == stream_id]
        assert versions == sorted(versions), "a stream's events arrived out of order"


async def _write_flipped_users(store: EventStore, count: int) -> None:
    for index in range(count):
        user, events = new_user(f"window{index}")
        user.set_active(False)
        events += user.collect_events()
        await store.append(uuid.UUID(user.org_id), user.id, 0, events, META)


async def test_a_log_window_answers_every_scan_as_the_database_would(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Readers at different places and speeds, of every type or some, interleaved: the window's answer to
    each scan is the database's, while it grows, serves, drops its oldest events and starts over."""
    await _write_flipped_users(store, 60)
    types_choices = [None, frozenset({"UserDeactivated"}), frozenset({"UserProvisioned", "UserDeactivated"})]
    chooser = random.Random(11)
    async with pool.acquire() as connection:
        tail = await log_tail(connection, 120)
        window = LogWindow(capacity=25)
        readers = [[tail[0], chooser.choice(types_choices), chooser.choice([1, 4, 10])] for _ in range(4)]
        for _ in range(200):
            reader = chooser.choice(readers)
            if chooser.random() < 0.05:
                reader[0] = chooser.choice(tail)  # moved by another process, or rebuilt
            after, types, limit = reader
            served = await window.scan(connection, after, limit, types)
            assert served == await scan_log(connection, after, limit, types)
            if served.end is not None:
                reader[0] = served.end


async def test_readers_at_the_same_place_share_one_read_of_the_log(
    store: EventStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _write_flipped_users(store, 10)
    reads = 0
    database_read = log_reader.read_log

    async def counted(*args: Any, **kwargs: Any) -> list[RecordedEvent]:
        nonlocal reads
        reads += 1
        return await database_read(*args, **kwargs)

    monkeypatch.setattr(log_reader, "read_log", counted)
    async with pool.acquire() as connection:
        start = (await log_tail(connection, 20))[0]
        window = LogWindow(capacity=100)
        scans = [
            await window.scan(connection, start, 5, types) for types in (None, {"UserDeactivated"}, None)
        ]
    assert reads == 1
    assert [scan.examined for scan in scans] == [5, 5, 5]
    assert {event.type for event in scans[1].events} <= {"UserDeactivated"}


async def test_a_load_of_more_streams_than_one_batch_replays_every_one_whole(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LOAD_BATCH", 2)
    org_id = uuid.uuid4()
    users = []
    async with pool.acquire() as connection, connection.transaction():
        transaction = Transaction(connection)
        for index in range(5):
            user = User(org_id=str(org_id), attributes={"userName": f"u{index}"}, active=True)
            user.replace({"userName": f"u{index}", "title": "T"}, active=index % 2 == 0)
            await transaction.append(org_id, user.id, 0, user.collect_events(), META)
            users.append(user)
        loaded = await transaction.load(org_id, [user.id for user in users])
    assert {user_id: (user.version, user.active) for user_id, user in loaded.items()} == {
        user.id: (user.version, user.active) for user in users
    }
