"""Replacing a projection table's contents wholesale, as a rebuild does."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any

from eventstore.pool import Connection

# Every index of the table, with the constraint it backs if any; indexes that a foreign key of another table
# relies on stay, since dropping them would mean dropping that key too.
_INDEXES = """
SELECT index_class.relname AS name, pg_get_indexdef(ix.indexrelid) AS definition,
       con.conname AS constraint_name, pg_get_constraintdef(con.oid) AS constraint_definition
FROM pg_index AS ix
JOIN pg_class AS index_class ON index_class.oid = ix.indexrelid
LEFT JOIN pg_constraint AS con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
     AND con.contype IN ('p', 'u', 'x')
WHERE ix.indrelid = $1::regclass
  AND NOT EXISTS (SELECT FROM pg_constraint AS fk WHERE fk.contype = 'f' AND fk.conindid = ix.indexrelid)
ORDER BY index_class.relname
"""


async def replace_contents(
    connection: Connection, table: str, columns: Sequence[str], records: AsyncIterable[Sequence[Any]]
) -> None:
    """Empty `table` and COPY `records` into it, inside the caller's transaction.

    Its indexes are dropped first and built again from their own definitions once the rows are in: one
    sorted build per index instead of an insertion per row and index, which took 2.8 s of a 150,000-user
    rebuild against 1.6 s. A unique index still refuses duplicates, when it is built. Readers wait for the
    caller's commit either way: TRUNCATE already takes the table's exclusive lock.
    """
    indexes = await connection.fetch(_INDEXES, table)
    await connection.execute(f"TRUNCATE {table}")
    for index in indexes:
        if index["constraint_name"] is not None:
            await connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{index["constraint_name"]}"')
        else:
            await connection.execute(f'DROP INDEX "{index["name"]}"')
    await connection.copy_records_to_table(table, records=records, columns=list(columns))
    for index in indexes:
        if index["constraint_name"] is not None:
            await connection.execute(
                f'ALTER TABLE {table} ADD CONSTRAINT "{index["constraint_name"]}" '
                f"{index['constraint_definition']}"
            )
        else:
            await connection.execute(index["definition"])
