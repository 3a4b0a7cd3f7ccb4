"""Every key leads with org_id, over the schema the migrations build (docs/scaling.md, "Keys"): on Citus a
distributed table's primary key and unique indexes must contain its distribution column, and leading with
it keeps each organization's rows together in every index. The exceptions are named in tests/org_scope.py
and in the plan."""

from __future__ import annotations

import asyncpg

from app.infrastructure.migrate import migrate
from tests.org_scope import KEY_EXCEPTIONS, org_tables_of_migrations

# Unique indexes (primary keys included) whose first key column is not org_id (an expression counts as
# not), and tables without a primary key, in the service's two schemas.
_KEYS_NOT_LED_BY_ORG = """
SELECT tab.relname AS table_name, ind.relname AS index_name
FROM pg_index AS idx
JOIN pg_class AS tab ON tab.oid = idx.indrelid
JOIN pg_namespace AS ns ON ns.oid = tab.relnamespace
JOIN pg_class AS ind ON ind.oid = idx.indexrelid
LEFT JOIN pg_attribute AS first ON first.attrelid = tab.oid AND first.attnum = idx.indkey[0]
WHERE ns.nspname IN ('public', 'analytics') AND tab.relkind IN ('r', 'p') AND idx.indisunique
  AND first.attname IS DISTINCT FROM 'org_id'
UNION ALL
SELECT tab.relname, 'primary key'
FROM pg_class AS tab
JOIN pg_namespace AS ns ON ns.oid = tab.relnamespace
WHERE ns.nspname IN ('public', 'analytics') AND tab.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT FROM pg_index AS idx WHERE idx.indrelid = tab.oid AND idx.indisprimary)
"""

_TABLES_WITH_ORG_ID = """
SELECT DISTINCT table_name FROM information_schema.columns
WHERE table_schema IN ('public', 'analytics') AND column_name = 'org_id'
"""


async def _keys_not_led_by_org(connection: asyncpg.Connection) -> set[tuple[str, str]]:
    return {(row["table_name"], row["index_name"]) for row in await connection.fetch(_KEYS_NOT_LED_BY_ORG)}


async def test_every_key_of_the_migrated_schema_leads_with_org_id_but_the_named_exceptions(
    empty_database: str,
) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        # Equal, not a subset: an exception the schema no longer needs is removed from the plan too.
        assert await _keys_not_led_by_org(connection) == set(KEY_EXCEPTIONS)
    finally:
        await connection.close()


async def test_a_new_table_keyed_without_org_id_first_is_caught(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        await connection.execute(
            "CREATE TABLE gadgets (gadget_id uuid PRIMARY KEY, org_id uuid NOT NULL);"
            "CREATE TABLE widgets (org_id uuid NOT NULL, name text NOT NULL);"
            "CREATE UNIQUE INDEX widgets_name_key ON widgets (name);"
            "CREATE TABLE analytics.sprockets (org_id uuid, sprocket_id uuid, PRIMARY KEY (org_id, sprocket_id));"
            "CREATE UNIQUE INDEX sprockets_name_key ON analytics.sprockets (lower(sprocket_id::text), org_id);"
        )
        assert await _keys_not_led_by_org(connection) - set(KEY_EXCEPTIONS) == {
            ("gadgets", "gadgets_pkey"),
            ("widgets", "primary key"),
            ("widgets", "widgets_name_key"),
            ("sprockets", "sprockets_name_key"),
        }
    finally:
        await connection.close()


async def test_the_statement_check_knows_every_table_that_has_an_org_id(empty_database: str) -> None:
    # The statement check reads the tables from the migrations' text; the database says what they built.
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        rows = await connection.fetch(_TABLES_WITH_ORG_ID)
        assert {row["table_name"] for row in rows} == org_tables_of_migrations()
    finally:
        await connection.close()
