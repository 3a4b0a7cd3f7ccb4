"""org_schemas: each organization's extension schemas as last declared, one row per schema stream.

Written in the transaction that appends a declaration, by the store's inline projection, and rebuilt from
the log alone with the other inline tables (both in projections/scim.py): a row is the stream's latest event, which holds the whole
declaration.
"""

from __future__ import annotations

from domain.org_schemas import EVENT_TYPE_NAMES
from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, RecordedEvent
from eventstore.store import ASSIGNED_TX

_UPSERT = """
INSERT INTO org_schemas (org_id, schema_id, urn, declaration, version, declared_at, declared_by)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (org_id, schema_id) DO UPDATE SET urn = excluded.urn, declaration = excluded.declaration,
    version = excluded.version, declared_at = excluded.declared_at, declared_by = excluded.declared_by
"""
# The latest declaration of each stream.
_LATEST = (
    f"SELECT DISTINCT ON (org_id, stream_id) {EVENT_COLUMNS} FROM events "
    f"WHERE type = ANY($1::text[]) AND {ASSIGNED_TX} ORDER BY org_id, stream_id, version DESC"
)


def _row(event: RecordedEvent) -> tuple[object, ...]:
    declaration = event.payload["declaration"]
    return (
        event.org_id,
        event.stream_id,
        declaration["id"],
        declaration,
        event.version,
        event.recorded_at,
        event.actor,
    )


async def write(connection: Connection, recorded: RecordedEvent) -> None:
    """The row of the schema whose declaration `recorded` just appended."""
    await connection.execute(_UPSERT, *_row(recorded))


async def rebuild_rows(connection: Connection) -> int:
    """Replace every row with rows derived from the log alone, in the caller's transaction, which holds the
    table's lock; returns the number of streams."""
    await connection.execute("TRUNCATE org_schemas")
    latest = [RecordedEvent(*row) for row in await connection.fetch(_LATEST, list(EVENT_TYPE_NAMES))]
    await connection.executemany(_UPSERT, [_row(event) for event in latest])
    return len(latest)
