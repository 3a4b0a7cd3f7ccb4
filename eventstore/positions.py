"""Where each consumer of the log stands, and what it set aside: the only module that reads or writes
`consumer_positions` and `parked_events`; and the advisory lock that lets one process at a time run a
consumer.

Every function runs on the caller's connection, inside the caller's transaction when there is one: a batch,
a park and a rebuild each move a position in the transaction that does their work."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore.pool import Connection
from eventstore.records import LogPosition, RecordedEvent

if TYPE_CHECKING:
    import asyncpg

    from eventstore.consumers import Consumer

_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('scimledger.consumer:' || $1::text, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('scimledger.consumer:' || $1::text, 0))"
# Whether some session holds a consumer's lock, read from pg_locks without taking it: probing by taking it
# could leave it taken on a pooled connection if the probe were cancelled halfway, stalling that consumer.
# A bigint advisory key shows as its high and low 32 bits in classid and objid, with objsubid 1.
_HELD = """
SELECT EXISTS (
    SELECT FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = ((key >> 32) & 4294967295)::oid AND objid = (key & 4294967295)::oid
)
FROM (SELECT hashtextextended('scimledger.consumer:' || $1::text, 0) AS key) AS consumer
"""


# Each live runner holds a key named after its consumers in share mode on its listener's connection, so that
# the runners of the same consumers can count each other without a table to keep: a runner that dies lets go
# of it with its session. Runners of other consumers (another version's, during a rolling upgrade) are not
# counted: they could not run this runner's share of its consumers.
_RUNNER_KEY = "hashtextextended('scimledger.runners:' || $1::text, 0)"
_ANNOUNCE = f"SELECT pg_advisory_lock_shared({_RUNNER_KEY})"
_LIVE_RUNNERS = f"""
SELECT count(*) FROM pg_locks, (SELECT {_RUNNER_KEY} AS key) AS runners
WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND mode = 'ShareLock'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = ((key >> 32) & 4294967295)::oid AND objid = (key & 4294967295)::oid
"""


def _runner_name(consumers: Sequence[str]) -> str:
    return ",".join(sorted(consumers))


async def announce_runner(connection: Connection, consumers: Sequence[str]) -> None:
    """Count this connection's session among the live runners of `consumers` while it lasts."""
    await connection.execute(_ANNOUNCE, _runner_name(consumers))


async def live_runners(connection: Connection, consumers: Sequence[str]) -> int:
    """How many runners of `consumers`, in any process, are live on this database."""
    count: int = await connection.fetchval(_LIVE_RUNNERS, _runner_name(consumers))
    return count


async def consumer_held(connection: Connection, name: str) -> bool:
    """Whether some session holds `name`'s lock (see _HELD)."""
    held: bool = await connection.fetchval(_HELD, name)
    return held


async def try_lock_consumer(connection: Connection, name: str) -> bool:
    """Take the session lock that makes this connection the one running `name`; False if another holds it."""
    taken: bool = await connection.fetchval(_LOCK, name)
    return taken


async def unlock_consumer(connection: Connection, name: str) -> None:
    await connection.fetchval(_UNLOCK, name)


async def close_lock_connection(connection: asyncpg.Connection) -> None:
    """Close a connection that held (or may hold) a consumer's session lock, releasing it; a broken one is
    dropped. Shielded: a cancelled runner still closes it, rather than leave its lock to a dead session."""
    try:
        await asyncio.shield(connection.close(timeout=2))
    except Exception:  # closing a broken connection may fail; it is being dropped anyway
        connection.terminate()


async def position_of(connection: Connection, name: str) -> LogPosition:
    row = await connection.fetchrow("SELECT tx, position FROM consumer_positions WHERE name = $1", name)
    return LogPosition(row["tx"], row["position"]) if row is not None else LogPosition(0, 0)


async def ensure_position(connection: Connection, name: str) -> None:
    await connection.execute("INSERT INTO consumer_positions (name) VALUES ($1) ON CONFLICT DO NOTHING", name)


async def lock_position(connection: Connection, name: str) -> LogPosition | None:
    """The position of `name`, its row locked until the transaction ends: a batch never applies on top of a
    position someone else moved (a rebuild), and a rebuild waits for the batch in flight."""
    row = await connection.fetchrow(
        "SELECT tx, position FROM consumer_positions WHERE name = $1 FOR UPDATE", name
    )
    return LogPosition(row["tx"], row["position"]) if row is not None else None


async def move_position(connection: Connection, name: str, to: LogPosition) -> None:
    await connection.execute(
        "UPDATE consumer_positions SET tx = $2, position = $3, updated_at = now() WHERE name = $1",
        name,
        to.tx,
        to.position,
    )


async def reset_position(connection: Connection, name: str) -> None:
    """Back to the start of the log, for a rebuild."""
    await connection.execute("UPDATE consumer_positions SET tx = '0', position = 0 WHERE name = $1", name)


async def forget_position(connection: Connection, name: str) -> None:
    await connection.execute("DELETE FROM consumer_positions WHERE name = $1", name)


async def set_aside(
    connection: Connection, name: str, event: RecordedEvent, error: str, attempts: int
) -> None:
    """Record `event` as parked with its error, and move `name` past it unless it is past it already."""
    await connection.execute(
        "INSERT INTO parked_events (name, position, tx, error, attempts) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (name, position) DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts",
        name,
        event.position,
        event.tx,
        error,
        attempts,
    )
    await connection.execute(
        "UPDATE consumer_positions SET tx = $2, position = $3, updated_at = now() "
        "WHERE name = $1 AND (tx, position) < ($2::xid8, $3::bigint)",
        name,
        event.tx,
        event.position,
    )


async def forget_parked(connection: Connection, name: str) -> None:
    await connection.execute("DELETE FROM parked_events WHERE name = $1", name)


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    name: str
    position: int
    lag_events: int
    lag_seconds: float
    running: bool
    parked: int
    last_parked_error: str | None


async def status(connection: Connection, consumers: Sequence[Consumer]) -> list[ConsumerStatus]:
    """Where each consumer stands, how far behind it is, whether some process runs it, what it parked."""
    result = []
    for consumer in consumers:
        after = await position_of(connection, consumer.name)
        types = sorted(consumer.event_types) if consumer.event_types is not None else None
        lag = await connection.fetchrow(
            "SELECT count(*) AS events, extract(epoch FROM now() - min(recorded_at)) AS seconds FROM events "
            "WHERE (tx, position) > ($1::xid8, $2::bigint) AND ($3::text[] IS NULL OR type = ANY($3::text[]))",
            after.tx,
            after.position,
            types,
        )
        assert lag is not None
        running = await connection.fetchval(_HELD, consumer.name)
        parked = await connection.fetchrow(
            "SELECT count(*) AS parked, (SELECT error FROM parked_events WHERE name = $1 ORDER BY parked_at DESC "
            "LIMIT 1) AS error FROM parked_events WHERE name = $1",
            consumer.name,
        )
        assert parked is not None
        result.append(
            ConsumerStatus(
                consumer.name,
                after.position,
                lag["events"],
                float(lag["seconds"] or 0.0),
                running,
                parked["parked"],
                parked["error"],
            )
        )
    return result
