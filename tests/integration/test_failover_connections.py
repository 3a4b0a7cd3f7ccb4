"""What a failover does to the service's connections, one piece at a time (tests/ha/ shows the whole):

- a pooled connection whose server stopped taking writes is dropped when it comes back to the pool, so the
  next one is opened anew (with the URL's target_session_attrs, on the new primary); others are kept, and so
  are those of a pool meant to read from a standby;
- the write refused by such a server is among the errors answered 503, never 500;
- losing the connection during a COMMIT is an unknown outcome (the change may be saved), while losing it
  before the COMMIT is not (the change was rolled back); nor is losing it after an autocommit append, before
  the request could answer (the change is saved).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from domain.users import User
from eventstore.pool import DATABASE_UNAVAILABLE, CommitOutcomeUnknown, create_pool
from eventstore.records import Metadata
from eventstore.store import EventStore, committing
from tests.conftest import Tenant

# A COMMIT that takes its time: a deferred constraint trigger runs at commit and sleeps there.
_SLOW_COMMIT = """
CREATE TEMP TABLE slow_commit (pause float8 NOT NULL);
CREATE FUNCTION pg_temp.pause_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(NEW.pause);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER pause_at_commit AFTER INSERT ON slow_commit DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION pg_temp.pause_at_commit();
"""


@pytest.fixture
async def small_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def backend_of(pool: asyncpg.Pool) -> int:
    pid: int = await pool.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_a_connection_whose_server_turned_read_only_is_dropped_on_release(
    small_pool: asyncpg.Pool,
) -> None:
    kept = await backend_of(small_pool)
    assert await backend_of(small_pool) == kept, "a connection that still takes writes is reused"
    async with small_pool.acquire() as connection:
        # What pg_auto_failover does to a node it is demoting or promoting, seen from one session.
        await connection.execute("SET default_transaction_read_only = on")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError) as refused:
            await connection.execute("CREATE TEMP TABLE refused (i int)")
    assert isinstance(refused.value, DATABASE_UNAVAILABLE)
    assert await backend_of(small_pool) != kept
    assert await small_pool.fetchval("SHOW default_transaction_read_only") == "off"


async def test_a_pool_meant_for_a_standby_keeps_its_read_only_connections(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1, writes=False)
    try:
        async with pool.acquire() as connection:
            kept = connection.get_server_pid()
            await connection.execute("SET default_transaction_read_only = on")
        assert await backend_of(pool) == kept
    finally:
        await pool.close()


async def until_committing(watcher: asyncpg.Connection, pid: int) -> None:
    """Until session `pid` sleeps inside its COMMIT."""
    for _ in range(200):
        if await watcher.fetchval(
            "SELECT query = 'COMMIT;' OR query = 'COMMIT' FROM pg_stat_activity "
            "WHERE pid = $1 AND wait_event = 'PgSleep'",
            pid,
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session never reached its COMMIT")


async def test_losing_the_connection_during_commit_is_an_unknown_outcome(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        await connection.execute(_SLOW_COMMIT)
        pid = connection.get_server_pid()

        async def terminate_when_committing() -> None:
            await until_committing(watcher, pid)
            await watcher.execute("SELECT pg_terminate_backend($1)", pid)

        terminator = asyncio.create_task(terminate_when_committing())
        with pytest.raises(CommitOutcomeUnknown) as lost:
            async with committing(connection):
                await connection.execute("INSERT INTO slow_commit VALUES (30)")
        await terminator
        assert isinstance(lost.value, DATABASE_UNAVAILABLE), "answered as an unavailable database is"
    finally:
        connection.terminate()
        await watcher.close()


async def test_losing_the_connection_before_commit_is_not_an_unknown_outcome(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        pid = connection.get_server_pid()

        async def terminate_when_sleeping() -> None:
            for _ in range(200):
                if await watcher.fetchval(
                    "SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $1", pid
                ):
                    break
                await asyncio.sleep(0.05)
            await watcher.execute("SELECT pg_terminate_backend($1)", pid)

        terminator = asyncio.create_task(terminate_when_sleeping())
        with pytest.raises(DATABASE_UNAVAILABLE) as lost:
            async with committing(connection):
                await connection.execute("SELECT pg_sleep(30)")
        await terminator
        assert not isinstance(lost.value, CommitOutcomeUnknown)
    finally:
        connection.terminate()
        await watcher.close()


async def test_losing_the_connection_after_an_autocommit_append_is_not_answered_as_nothing_saved(
    small_pool: asyncpg.Pool, tenant: Tenant, database_url: str
) -> None:
    store = EventStore(small_pool)
    org_id = tenant.org.org_id
    user = User(org_id=str(org_id), attributes={"userName": "kept@failover.example"}, active=True)
    watcher = await asyncpg.connect(database_url)
    try:

        async def save_then_lose_the_connection() -> None:
            async with store.autocommit() as transaction:
                await transaction.save(org_id, [user], Metadata("token:test"))
                # The primary goes away before the request reads what it answers with.
                pid = transaction.connection.get_server_pid()
                await watcher.execute("SELECT pg_terminate_backend($1)", pid)
                await transaction.connection.fetchval("SELECT 1")

        with pytest.raises(CommitOutcomeUnknown):
            await save_then_lose_the_connection()
        saved = await watcher.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", user.id)
        assert saved == 1
    finally:
        await watcher.close()
