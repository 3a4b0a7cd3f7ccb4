"""Tamper evidence: edits, deletions, insertions, reordering and truncation made directly in SQL, by a database
superuser who disables the append-only triggers, are all caught by `audit verify`."""

import datetime
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from app.bootstrap import build_services
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.container import Services
from eventstore.pool import create_pool
from eventstore.records import EVENT_COLUMNS, Metadata, RecordedEvent
from projections.seals import GENESIS, Head, chain, head, seal_pending, verify
from tests.conftest import create_database, drop_database

META = Metadata("token:audit-test")


@dataclass
class History:
    org_id: uuid.UUID
    org_name: str
    positions: list[int]  # the org's events, in log order


@pytest.fixture(scope="module")
async def tamperable(server_url: str) -> AsyncIterator[tuple[str, asyncpg.Pool, Services]]:
    """A database of this module's own: tampering with the log must not leak into other tests' rebuilds."""
    url = await create_database(server_url)
    connection = await asyncpg.connect(url)
    await migrate(connection)
    await connection.close()
    pool = await create_pool(url, min_size=1, max_size=4)
    services = build_services(Settings(database_url=url, worker=False), pool)
    yield url, pool, services
    await services.notifier.aclose()
    await pool.close()
    await drop_database(server_url, url)


@pytest.fixture
def pool(tamperable: tuple[str, asyncpg.Pool, Services]) -> asyncpg.Pool:
    return tamperable[1]


@pytest.fixture
def services(tamperable: tuple[str, asyncpg.Pool, Services]) -> Services:
    return tamperable[2]


@pytest.fixture
def cli_env(tamperable: tuple[str, asyncpg.Pool, Services]) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": tamperable[0]}


async def seal_everything(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await seal_pending(connection)


async def recompute_seals(pool: asyncpg.Pool, org_id: uuid.UUID) -> None:
    """What a superuser can do to hide an edit: switch the seals' triggers off and recompute the org's chain."""
    rows = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 ORDER BY tx, position", org_id
    )
    seal, recomputed = GENESIS, []
    for row in rows:
        event = RecordedEvent(*row)
        seal = chain(seal, event)
        recomputed.append((event.org_id, event.position, event.tx, seal))
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("ALTER TABLE audit_seals DISABLE TRIGGER USER")
        await connection.execute("DELETE FROM audit_seals WHERE org_id = $1", org_id)
        await connection.copy_records_to_table(
            "audit_seals", records=recomputed, columns=["org_id", "position", "tx", "seal"]
        )
        await connection.execute("ALTER TABLE audit_seals ENABLE TRIGGER USER")


@pytest.fixture
async def history(services: Services, pool: asyncpg.Pool) -> History:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"audited-{uuid.uuid4().hex[:8]}")
    for index in range(4):
        row = await services.users.provision(
            org.org_id, {"userName": f"a{index}@audit.test", "title": "T"}, META
        )
        await services.users.replace(org.org_id, row.user_id, {"userName": f"a{index}@audit.test"}, META)
    await seal_everything(pool)
    positions = [
        row[0]
        for row in await pool.fetch(
            "SELECT position FROM events WHERE org_id = $1 ORDER BY tx, position", org.org_id
        )
    ]
    return History(org.org_id, org.name, positions)


async def tamper(pool: asyncpg.Pool, statement: str, *args: object) -> None:
    """What a superuser can do: switch the append-only triggers off, change the log, switch them on."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await connection.execute(statement, *args)
        await connection.execute("ALTER TABLE events ENABLE TRIGGER USER")


async def verdict(pool: asyncpg.Pool, org_id: uuid.UUID, expected: Head | None = None):  # type: ignore[no-untyped-def]
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        return await verify(connection, org_id, expected, max_unsealed_age=datetime.timedelta(hours=1))


async def test_an_untouched_history_verifies(pool: asyncpg.Pool, history: History) -> None:
    result = await verdict(pool, history.org_id)
    assert result.intact
    assert result.checked == len(history.positions) == 8
    async with pool.acquire() as connection:
        latest = await head(connection, history.org_id)
    assert latest is not None
    assert latest.position == history.positions[-1]
    assert (await verdict(pool, history.org_id, Head.parse(str(latest)))).intact


async def test_an_edited_event_is_named(pool: asyncpg.Pool, history: History) -> None:
    target = history.positions[3]
    await tamper(
        pool,
        "UPDATE events SET payload = jsonb_set(payload, '{changed}', '{\"title\": \"CEO\"}') "
        "WHERE position = $1",
        target,
    )
    result = await verdict(pool, history.org_id)
    assert not result.intact
    assert f"event {target} " in (result.problem or "")
    assert "edited" in (result.problem or "")
    assert result.checked == 3


async def test_an_edited_actor_is_caught_too(pool: asyncpg.Pool, history: History) -> None:
    await tamper(
        pool, "UPDATE events SET actor = 'token:someone-else' WHERE position = $1", history.positions[0]
    )
    assert f"event {history.positions[0]} " in ((await verdict(pool, history.org_id)).problem or "")


async def test_a_deleted_event_is_named(pool: asyncpg.Pool, history: History) -> None:
    target = history.positions[5]
    await tamper(pool, "DELETE FROM events WHERE position = $1", target)
    result = await verdict(pool, history.org_id)
    assert f"sealed at position {target} was deleted" in (result.problem or "")


async def test_an_event_inserted_into_the_past_is_named(pool: asyncpg.Pool, history: History) -> None:
    before = history.positions[2]
    await tamper(
        pool,
        "INSERT INTO events (position, tx, org_id, stream_id, version, type, schema_version, payload, occurred_at, "
        "actor) OVERRIDING SYSTEM VALUE SELECT position + 100000000, tx, org_id, $2, 1, 'UserProvisioned', 2, "
        "payload, occurred_at, actor FROM events WHERE position = $1",
        before,
        uuid.uuid4(),
    )
    result = await verdict(pool, history.org_id)
    assert f"event {before + 100000000} " in (result.problem or "")
    assert "inserted" in (result.problem or "")


async def test_a_reordered_event_is_caught(pool: asyncpg.Pool, history: History) -> None:
    moved = history.positions[1]
    await tamper(
        pool,
        "UPDATE events SET tx = (SELECT max(tx) FROM events WHERE org_id = $2) WHERE position = $1",
        moved,
        history.org_id,
    )
    result = await verdict(pool, history.org_id)
    assert f"sealed at position {moved} was deleted or moved" in (result.problem or "")


async def test_a_rewrite_that_recomputes_every_seal_is_caught_by_the_head_kept_outside(
    pool: asyncpg.Pool, history: History
) -> None:
    async with pool.acquire() as connection:
        kept_outside = await head(connection, history.org_id)
    assert kept_outside is not None
    await tamper(pool, "UPDATE events SET actor = 'admin:mallory' WHERE position = $1", history.positions[2])
    await recompute_seals(pool, history.org_id)  # a superuser can recompute the chain in the database...
    assert (await verdict(pool, history.org_id)).intact
    result = await verdict(pool, history.org_id, kept_outside)  # ...but not the head kept elsewhere
    assert "was rewritten" in (result.problem or "")


async def test_cutting_off_the_end_is_caught_by_the_head(pool: asyncpg.Pool, history: History) -> None:
    async with pool.acquire() as connection:
        kept_outside = await head(connection, history.org_id)
    assert kept_outside is not None
    last_two = history.positions[-2:]
    await tamper(pool, "DELETE FROM events WHERE position = ANY($1::bigint[])", last_two)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("ALTER TABLE audit_seals DISABLE TRIGGER USER")
        await connection.execute("DELETE FROM audit_seals WHERE position = ANY($1::bigint[])", last_two)
        await connection.execute("ALTER TABLE audit_seals ENABLE TRIGGER USER")
    assert (await verdict(pool, history.org_id)).intact, (
        "without the head, a clean cut looks like a shorter log"
    )
    result = await verdict(pool, history.org_id, kept_outside)
    assert "cut off" in (result.problem or "")


async def test_the_cli_prints_the_head_and_exits_non_zero_naming_the_tampered_event(
    pool: asyncpg.Pool, history: History, cli_env: dict[str, str]
) -> None:
    cli = str(Path(sys.executable).parent / "scimledger")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], env=cli_env, capture_output=True, text=True, timeout=60)

    printed = run("audit", "head", "--org", history.org_name)
    assert printed.returncode == 0
    kept = printed.stdout.strip()
    assert kept.startswith(f"{history.positions[-1]}:")
    intact = run("audit", "verify", "--org", history.org_name, "--head", kept)
    assert intact.returncode == 0
    assert "intact, 8 sealed event(s) verified" in intact.stdout
    await tamper(pool, "UPDATE events SET request_id = 'forged' WHERE position = $1", history.positions[4])
    caught = run("audit", "verify", "--org", history.org_name, "--head", kept)
    assert caught.returncode == 3
    assert f"TAMPERED: event {history.positions[4]} " in caught.stderr
