"""A database of its own, and the hand of a superuser who writes into its log behind the service's back.

What a superuser forges must not reach other tests (a forged event fails every `audit verify` and every
rebuild of the whole log), so each test that forges works on a `Ledger` of its own.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.bootstrap import build_services
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.container import Services
from eventstore.consumers import process_batch
from eventstore.pool import create_pool
from eventstore.positions import ensure_position
from eventstore.records import Metadata
from projections import seals
from tests.conftest import create_database, drop_database

META = Metadata("token:blind-spots")


@dataclass
class Ledger:
    url: str
    pool: asyncpg.Pool
    services: Services
    org: tenancy.Org
    user_id: uuid.UUID

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": self.url}
        env.pop("SCIMLEDGER_TEST_DATABASE_URL", None)
        return env


@asynccontextmanager
async def open_ledger(server_url: str) -> AsyncIterator[Ledger]:
    """A database of its own with one organization, two users and their events, all sealed."""
    url = await create_database(server_url)
    connection = await asyncpg.connect(url)
    await migrate(connection)
    await connection.close()
    pool = await create_pool(url, min_size=1, max_size=4)
    services = build_services(Settings(database_url=url, worker=False), pool)
    try:
        async with pool.acquire() as connection:
            org = await tenancy.create_org(connection, f"sealed-{uuid.uuid4().hex[:8]}")
        first = await services.users.provision(org.org_id, {"userName": "ann@seal.test"}, META)
        await services.users.provision(org.org_id, {"userName": "bob@seal.test"}, META)
        await seal_pending(pool)
        yield Ledger(url, pool, services, org, first.user_id)
    finally:
        await services.notifier.aclose()
        await pool.close()
        await drop_database(server_url, url)


async def seal_pending(pool: asyncpg.Pool) -> None:
    """What the runner's sealer does: seal everything below its horizon, never rewriting a seal."""
    async with pool.acquire() as connection:
        sealer = seals.Sealer()
        await ensure_position(connection, sealer.name)
        while (await process_batch(connection, sealer, 1000)).examined:
            pass


async def as_superuser(pool: asyncpg.Pool, statement: str, *args: object) -> None:
    """A superuser switches the guarding triggers off, changes a table, and switches them on again."""
    async with pool.acquire() as connection, connection.transaction():
        for table in ("events", "audit_seals"):
            await connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        await connection.execute(statement, *args)
        for table in ("events", "audit_seals"):
            await connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


# A transaction id a billion ahead of the forging transaction's own: no transaction has been given it.
_FUTURE_TX = "(pg_current_xact_id()::text::numeric + 1000000000)::text::xid8"


async def forge_user_in_the_future(ledger: Ledger) -> int:
    """Insert a provisioned user whose transaction id lies far beyond any transaction yet begun."""
    position: int = await ledger.pool.fetchval(
        "SELECT max(position) FROM events WHERE org_id = $1", ledger.org.org_id
    )
    forged = uuid.uuid4()
    await as_superuser(
        ledger.pool,
        "INSERT INTO events (tx, org_id, stream_id, version, type, schema_version, payload, occurred_at, actor) "
        f"SELECT {_FUTURE_TX}, org_id, $2, 1, type, "
        "schema_version, jsonb_set(payload, '{attributes,userName}', '\"mallory@seal.test\"'), occurred_at, actor "
        "FROM events WHERE org_id = $1 AND type = 'UserProvisioned' ORDER BY position LIMIT 1",
        ledger.org.org_id,
        forged,
    )
    forged_position: int = await ledger.pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1", forged
    )
    assert forged_position > position
    return forged_position


async def forge_next_event(
    ledger: Ledger, stream_id: uuid.UUID, event_type: str, payload: Mapping[str, Any] | None = None
) -> int:
    """Append `event_type` to a stream, at its next version, with a transaction id from the future; returns
    the forged event's position."""
    position: int = await ledger.pool.fetchval(
        "SELECT max(position) FROM events WHERE org_id = $1", ledger.org.org_id
    )
    await as_superuser(
        ledger.pool,
        "INSERT INTO events (tx, org_id, stream_id, version, type, payload, occurred_at, actor) "
        f"SELECT {_FUTURE_TX}, $1, $2, max(version) + 1, $3, $4::jsonb, $5, 'token:forged' "
        "FROM events WHERE org_id = $1 AND stream_id = $2",
        ledger.org.org_id,
        stream_id,
        event_type,
        dict(payload or {}),
        datetime.datetime.now(datetime.UTC),
    )
    forged: int = await ledger.pool.fetchval(
        "SELECT max(position) FROM events WHERE org_id = $1 AND stream_id = $2", ledger.org.org_id, stream_id
    )
    assert forged > position
    return forged
