import asyncio

import asyncpg
import pytest

from app.infrastructure.migrate import MigrationError, available_migrations, migrate, pending_migrations


async def test_migrations_are_numbered_and_ordered() -> None:
    versions = [migration.version for migration in available_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == 1


async def test_two_services_migrating_at_once_apply_each_migration_exactly_once(empty_database: str) -> None:
    connections = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(connection) for connection in connections))
        applied = sorted(name for result in results for name in result)
        assert applied == [migration.name for migration in available_migrations()]
        rows = await connections[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in rows] == [migration.version for migration in available_migrations()]
        assert await pending_migrations(connections[0]) == []
        assert await migrate(connections[0]) == []
    finally:
        for connection in connections:
            await connection.close()


async def test_a_migration_edited_after_it_was_applied_is_refused(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        await connection.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(connection)
    finally:
        await connection.close()
