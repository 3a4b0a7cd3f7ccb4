"""Rebuilding a projection from the log: in place, in one transaction (`rebuild`), or beside the live rows
and swapped in at the end (`rebuild_beside`), so that readers and the live runner never stop."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from eventstore.consumers import Projection, Relocatable, as_read_by, process_batch
from eventstore.log_reader import read_log
from eventstore.pool import Connection
from eventstore.positions import (
    ensure_position,
    forget_parked,
    forget_position,
    lock_position,
    move_position,
    position_of,
    reset_position,
    try_lock_consumer,
    unlock_consumer,
)
from eventstore.store import Transaction

log = logging.getLogger("scimledger.runner")


async def rebuild(connection: Connection, projection: Projection, batch_size: int = 5000) -> int:
    """Recompute `projection` from the whole log, in one transaction; returns the events replayed.

    Locking the position row first makes a running instance's next batch wait, then start from the
    rebuilt position.
    """
    async with connection.transaction():
        await ensure_position(connection, projection.name)
        await lock_position(connection, projection.name)
        await projection.reset(connection)
        await reset_position(connection, projection.name)
        await forget_parked(connection, projection.name)
        replayed = 0
        started = time.monotonic()
        while True:
            after = await position_of(connection, projection.name)
            events = await read_log(connection, after, batch_size, projection.event_types)
            if not events:
                break
            await projection.handle(Transaction(connection), await as_read_by(projection, connection, events))
            await move_position(connection, projection.name, events[-1].log_position)
            replayed += len(events)
        log.info("rebuilt %s from %d events in %.1f s", projection.name, replayed, time.monotonic() - started)
        return replayed


SHADOW_SCHEMA = "scimledger_rebuild"
_RETIRED_SCHEMA = "scimledger_retired"


async def rebuild_beside(
    connection: Connection,
    projection: Relocatable,
    batch_size: int = 5000,
    before_swap: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Rebuild `projection` without downtime; returns the events replayed.

    New tables are built in a schema of their own, in short batches (so that no long transaction holds the
    log's tailing readers back), while readers keep reading the live tables and the live runner keeps
    applying to them. Then one short transaction waits for the live runner's batch, brings the new tables up
    to the log's head, puts them in place of the old ones with the old ones' grants, and hands the position
    over. Readers see the old rows until that transaction commits.
    """
    name = f"rebuild:{projection.name}"
    if not await try_lock_consumer(connection, name):
        raise RuntimeError(f"Another rebuild of {projection.name} is running.")
    try:
        shadow = projection.relocated(SHADOW_SCHEMA, f"{projection.name}#rebuild")
        await connection.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
        await connection.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
        for table in projection.tables:
            await connection.execute(
                f"CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE {projection.schema}.{table} INCLUDING ALL)"
            )
        await ensure_position(connection, shadow.name)
        await reset_position(connection, shadow.name)
        replayed = 0
        started = time.monotonic()
        while (batch := await process_batch(connection, shadow, batch_size)).examined:
            replayed += len(batch.events)
        if before_swap is not None:
            await before_swap()
        async with connection.transaction():
            await ensure_position(connection, projection.name)
            await lock_position(connection, projection.name)
            while (batch := await process_batch(connection, shadow, batch_size)).examined:
                replayed += len(batch.events)
            await connection.execute(f"DROP SCHEMA IF EXISTS {_RETIRED_SCHEMA} CASCADE")
            await connection.execute(f"CREATE SCHEMA {_RETIRED_SCHEMA}")
            for table in projection.tables:
                grants = await connection.fetch(
                    "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                    "WHERE table_schema = $1 AND table_name = $2 AND grantee <> current_user",
                    projection.schema,
                    table,
                )
                await connection.execute(
                    f"ALTER TABLE {projection.schema}.{table} SET SCHEMA {_RETIRED_SCHEMA}"
                )
                await connection.execute(
                    f"ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA {projection.schema}"
                )
                for grantee, privilege in grants:
                    await connection.execute(
                        f'GRANT {privilege} ON {projection.schema}.{table} TO "{grantee}"'
                    )
            built = await position_of(connection, shadow.name)
            await move_position(connection, projection.name, built)
            await forget_position(connection, shadow.name)
            await forget_parked(connection, projection.name)
            await connection.execute(f"DROP SCHEMA {_RETIRED_SCHEMA} CASCADE")
            await connection.execute(f"DROP SCHEMA {SHADOW_SCHEMA} CASCADE")
        log.info(
            "rebuilt %s beside the live rows from %d events in %.1f s",
            projection.name,
            replayed,
            time.monotonic() - started,
        )
        return replayed
    finally:
        await unlock_consumer(connection, name)
