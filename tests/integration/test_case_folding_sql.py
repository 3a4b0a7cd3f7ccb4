# ruff: noqa: RUF001 -- confusable letters are what these compare
"""The database folds as Python does (scim_fold, migration 0010), and its unique indexes use that folding."""

import sys
import unicodedata
import uuid

import asyncpg
import pytest

from app.infrastructure.migrate import available_migrations, migrate
from app.services.container import Services
from domain.errors import UserNameTaken
from projections import scim_users
from scim.folding import fold
from tests.integration.test_scim_projection import META, listing, rebuild
from tests.unit.test_folding import DIFFERENT, EQUAL


def assigned_code_points() -> list[str]:
    return [
        chr(code_point)
        for code_point in range(1, sys.maxunicode + 1)
        if unicodedata.category(chr(code_point)) not in ("Cn", "Cs")
    ]


async def test_the_database_folds_every_assigned_code_point_as_python_does(pool: asyncpg.Pool) -> None:
    # Unassigned code points are left out: this Python's Unicode tables may be older than the database's.
    corpus = assigned_code_points()
    corpus += [text for pair in EQUAL + DIFFERENT for text in pair]
    corpus += [
        "İlker.Çağlar@Example.COM",
        "ΟΔΥΣΣΕΥΣ",
        "Ǆemal",
        "Ꭰꭰ",
        "ǅ",
        "ＳＴＲＡẞＥ",
        "Ω Å K",
        "\u1e9b\u0323",
        # Lowering a capital can make a sequence that composes: J, W, Y with marks only lower case has.
        "J\u030c",
        "W\u030a",
        "Y\u030a",
        "T\u0308",
        "H\u0331",
        "\u0130\u0301",
    ]
    rows = await pool.fetch("SELECT text, scim_fold(text) FROM unnest($1::text[]) AS t(text)", corpus)
    different = [(row[0], row[1], fold(row[0])) for row in rows if row[1] != fold(row[0])]
    assert different == []


async def test_user_name_eq_stays_one_lookup_in_the_unique_index(pool: asyncpg.Pool) -> None:
    plan = await pool.fetchval(
        "EXPLAIN (FORMAT JSON) SELECT user_id FROM scim_users WHERE org_id = $1 AND scim_fold(user_name) = $2",
        uuid.uuid4(),
        "x",
    )
    assert '"Index Name": "scim_users_user_name_key"' in plan


async def apply_through(connection: asyncpg.Connection, last: int) -> None:
    """The schema as it was when migration `last` was the newest."""
    await connection.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for migration in available_migrations():
        if migration.version <= last:
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )


async def insert_user(connection: asyncpg.Connection, org_id: uuid.UUID, user_name: str) -> None:
    await connection.execute(
        "INSERT INTO scim_users (org_id, user_id, user_name, active, resource, version, created, "
        "last_modified, sort_key) VALUES ($1, $2, $3, true, '{}', 1, now(), now(), 1)",
        org_id,
        uuid.uuid4(),
        user_name,
    )


async def test_migrating_an_existing_database_folds_its_unique_indexes(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await apply_through(connection, 9)
        org_id = uuid.uuid4()
        await insert_user(connection, org_id, "İlker@example.com")
        assert (await migrate(connection))[0] == "0010_case_folding.sql"
        with pytest.raises(asyncpg.UniqueViolationError):
            await insert_user(connection, org_id, "i̇LKER@EXAMPLE.COM")
        await insert_user(connection, org_id, "ılker@example.com")  # dotless: another name
    finally:
        await connection.close()


async def test_migrating_names_that_the_folding_makes_equal_names_them(empty_database: str) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await apply_through(connection, 9)
        org_id = uuid.uuid4()
        await insert_user(connection, org_id, "straße@example.com")
        await insert_user(connection, org_id, "STRASSE@example.com")  # lower() kept these apart
        with pytest.raises(asyncpg.RaiseError, match=r"userNames in org .*straße@example.com"):
            await migrate(connection)
        assert await connection.fetchval("SELECT max(version) FROM schema_migrations") == 9
    finally:
        await connection.close()


async def test_a_rebuild_keeps_lookups_and_uniqueness_under_the_folding(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    await services.users.provision(org_id, {"userName": "İlker.Σ@x.org"}, META)
    await rebuild(services, pool)
    async with pool.acquire() as connection:
        page = await scim_users.query(connection, org_id, listing('userName eq "i̇LKER.ς@X.ORG"'))
    assert [row.resource["userName"] for row in page.rows] == ["İlker.Σ@x.org"]
    with pytest.raises(UserNameTaken):
        await services.users.provision(org_id, {"userName": "i̇lker.σ@x.org"}, META)
