"""Numbered SQL migrations, each applied once, in order, under an advisory lock."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from eventstore.pool import Connection

log = logging.getLogger("scimledger.migrate")

# Any constant works as long as every scimledger process uses the same one: it serialises migrators, so two
# services starting at once never both apply a migration.
MIGRATION_LOCK_KEY = 0x5C1_4ED6E5
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


# The files ship with the code and never change under a running process; /readyz asks on every probe.
@functools.cache
def available_migrations() -> tuple[Migration, ...]:
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return tuple(found)


async def applied_versions(connection: Connection) -> dict[int, str]:
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def pending_migrations(connection: Connection) -> list[Migration]:
    applied = await applied_versions(connection)
    return [migration for migration in available_migrations() if migration.version not in applied]


async def migrate(connection: Connection) -> list[str]:
    """Apply what is pending; returns the names applied. Safe to run from several processes at once."""
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = await applied_versions(connection)
        done = []
        for migration in available_migrations():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.name} was changed after it was applied; add a new migration instead."
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %s", migration.name)
            done.append(migration.name)
        return done
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


class SchemaNotCurrent(Exception):
    """The database's migrations are not the code's: a command other than `migrate` or `serve` refuses it
    rather than read it wrongly or change it by surprise."""


class NotMigrated(SchemaNotCurrent):
    """Never migrated, or migrated by an older scimledger: `scimledger migrate` brings it up to date."""


class NewerSchema(SchemaNotCurrent):
    """Migrated by a newer scimledger: this code does not know what some of its tables mean."""


async def require_current_schema(connection: Connection, where: str) -> None:
    """Refuse a database whose applied migrations are not exactly the code's, naming it as `where`. Reads
    only: a shared database pointed at by mistake is left as it was found, without a table or role more."""
    applied = await applied_versions(connection)
    known = {migration.version: migration for migration in available_migrations()}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise NewerSchema(
            f"{where} was migrated by a newer scimledger: it has migration(s) "
            f"{', '.join(f'{version:04d}' for version in unknown)}, which this version does not know. "
            "Upgrade scimledger, or point DATABASE_URL at this version's database; nothing was changed."
        )
    pending = [migration.name for version, migration in known.items() if version not in applied]
    if not applied:
        raise NotMigrated(
            f"{where} has no scimledger tables: it was never migrated. If it is the database you meant, run "
            "'scimledger migrate' first; nothing was changed."
        )
    if pending:
        raise NotMigrated(
            f"{where} is behind this scimledger by {len(pending)} migration(s) ({', '.join(pending)}). "
            "Run 'scimledger migrate' (or start 'scimledger serve'), then this command again; "
            "nothing was changed."
        )
