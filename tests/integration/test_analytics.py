"""The analytics schema agrees with the log, however the runner cuts it into batches; analysts read it and
nothing else."""

import asyncio
import datetime
import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from app.infrastructure.migrate import migrate
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.catalog import Group, Project
from domain.users import User
from eventstore.consumers import process_batch
from eventstore.positions import ensure_position
from eventstore.rebuilds import rebuild, rebuild_beside
from eventstore.records import Metadata
from projections import audit
from projections.activity import ProvisioningActivity
from projections.analytics import AnalyticsAccess
from scim.core_schemas import ENTERPRISE_USER
from scim.group_patch import GroupChange, MembershipStep

META = Metadata("token:analytics-test")
ADMIN = Metadata("admin:analytics-test")
EVER = (
    datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC),
)


async def make_history(services: Services, pool: asyncpg.Pool) -> uuid.UUID:
    org_id = uuid.uuid4()
    await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await services.catalog.create(PROJECT, org_id, "Zeus", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    await services.catalog.create(ROLE, org_id, "Viewer", ADMIN)
    users = [
        (
            await services.users.provision(
                org_id,
                {
                    "userName": f"an{index}@x.org",
                    "displayName": f"An {index}",
                    "emails": [{"value": f"an{index}@x.org", "primary": True}],
                    **({ENTERPRISE_USER: {"department": "Sales", "costCenter": "41"}} if index < 2 else {}),
                },
                META,
            )
        ).user_id
        for index in range(5)
    ]
    groups = {
        row["display_name"]: row["group_id"]
        for row in await pool.fetch(
            "SELECT display_name, group_id FROM scim_groups WHERE org_id = $1", org_id
        )
    }

    async def push(group: str, *steps: MembershipStep) -> None:
        await services.groups.change(org_id, groups[group], GroupChange(steps=list(steps)), META)

    ids = [str(user) for user in users]
    await push("Statsig-Apollo-Admin", MembershipStep("add", (ids[0], ids[1])))
    await push("Statsig-Apollo-Viewer", MembershipStep("add", tuple(ids[1:4])))
    await push("Statsig-Apollo-Admin", MembershipStep("remove", (ids[0],)))
    await push("Statsig-Apollo-Admin", MembershipStep("add", (ids[0],)))  # back again: a second interval
    await push("Statsig-Zeus-Admin", MembershipStep("add", (ids[4],)))
    await services.catalog.rename(PROJECT, org_id, "Apollo", "Artemis", ADMIN)
    await push("Statsig-Apollo-Viewer", MembershipStep("replace", (ids[0],)))  # the same group, now Artemis
    ops = {ENTERPRISE_USER: {"department": "Ops", "manager": {"value": ids[0]}}}
    await services.users.replace(
        org_id, users[2], {"userName": "renamed@x.org", **ops, "active": False}, META
    )
    # The extension changed in part, then removed altogether.
    await services.users.replace(
        org_id, users[1], {"userName": "an1@x.org", ENTERPRISE_USER: {"costCenter": "42"}}, META
    )
    await services.users.replace(
        org_id, users[0], {"userName": "an0@x.org", ENTERPRISE_USER: {"manager": {"value": ids[4]}}}, META
    )
    await services.catalog.archive(PROJECT, org_id, "Zeus", ADMIN)
    await services.users.remove_from_organization(org_id, users[3], ADMIN)
    return org_id


async def analytics_of(pool: asyncpg.Pool, org_id: uuid.UUID) -> dict[str, Any]:
    intervals = await pool.fetch(
        "SELECT user_id, group_id, project, role, valid_from, valid_to, granted_by, revoked_by, cause, revoke_cause "
        "FROM analytics.membership_intervals WHERE org_id = $1 ORDER BY valid_from, user_id, group_id",
        org_id,
    )
    return {
        "intervals": [tuple(row) for row in intervals],
        "users": sorted(
            tuple(row)
            for row in await pool.fetch(
                "SELECT user_id, user_name, display_name, email, active, member, department, manager_id "
                "FROM analytics.users WHERE org_id = $1",
                org_id,
            )
        ),
        "memberships": sorted(
            tuple(row)
            for row in await pool.fetch(
                "SELECT user_id, group_id FROM analytics.memberships WHERE org_id = $1", org_id
            )
        ),
        "groups": sorted(
            tuple(row)
            for row in await pool.fetch(
                "SELECT project, role, linked, archived FROM analytics.groups WHERE org_id = $1", org_id
            )
        ),
    }


async def test_analytics_agree_with_the_log_in_one_batch_or_in_batches_of_three(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = await make_history(services, pool)
    consumer = AnalyticsAccess()
    async with pool.acquire() as connection:
        await rebuild(connection, consumer)
    whole = await analytics_of(pool, org_id)

    async with pool.acquire() as connection:
        await consumer.reset(connection)
        await ensure_position(connection, consumer.name)
        await connection.execute(
            "UPDATE consumer_positions SET tx = '0', position = 0 WHERE name = $1", consumer.name
        )
        while (await process_batch(connection, consumer, limit=3)).examined:
            pass
    assert await analytics_of(pool, org_id) == whole

    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        oracle = await audit.access(connection, org_id, "Statsig", *EVER)
        replayed = (await audit.as_of(connection, org_id, EVER[1], "Statsig")).to_report()
    assert whole["intervals"] == [
        (
            uuid.UUID(row.user_id),
            uuid.UUID(row.group_id),
            row.project,
            row.role,
            row.valid_from,
            row.valid_to,
            row.granted_by,
            row.revoked_by,
            row.grant_cause,
            row.revoke_cause,
        )
        for row in sorted(oracle, key=lambda row: (row.valid_from, row.user_id, row.group_id))
    ]
    assert whole["memberships"] == sorted(
        (uuid.UUID(membership["user"]), uuid.UUID(membership["group"]))
        for membership in replayed["memberships"]
    )
    assert sorted((user[1], user[4], user[5]) for user in whole["users"]) == sorted(
        (user["userName"], user["active"], user["member"]) for user in replayed["users"]
    )
    closed = [row for row in whole["intervals"] if row[5] is not None]
    assert {(row[2], row[3], row[9]) for row in closed} >= {
        ("Apollo", "Admin", "push"),
        ("Zeus", "Admin", "archive"),
    }
    assert ("Artemis", "Viewer", True, False) in whole["groups"]
    assert ("Zeus", "Admin", False, True) in whole["groups"]  # archiving unlinked it
    names = [user[1] for user in whole["users"]]
    assert "an0@x.org" in names
    assert "renamed@x.org" in names
    by_name = {user[1]: user for user in whole["users"]}
    an0 = by_name["an0@x.org"]
    # The enterprise extension's department and manager, as the last change to each user left them.
    assert {name: user[6:] for name, user in by_name.items()} == {
        "an0@x.org": (None, str(by_name["an4@x.org"][0])),
        "an1@x.org": (None, None),
        "renamed@x.org": ("Ops", str(an0[0])),
        "an3@x.org": (None, None),
        "an4@x.org": (None, None),
    }


async def test_the_analyst_role_reads_the_analytics_schema_and_nothing_else(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL ROLE scimledger_analyst")
        await connection.fetchval("SELECT count(*) FROM analytics.membership_intervals")
        await connection.fetchval("SELECT count(*) FROM analytics.provisioning_activity")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.fetchval("SELECT count(*) FROM events")
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL ROLE scimledger_analyst")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM analytics.users")
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL ROLE scimledger_analyst")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.fetchval("SELECT count(*) FROM api_tokens")


async def activity_of(pool: asyncpg.Pool, org_id: uuid.UUID) -> dict[tuple[str, Any], int]:
    rows = await pool.fetch(
        "SELECT event_type, day, events FROM analytics.provisioning_activity WHERE org_id = $1", org_id
    )
    return {(row[0], row[1]): row[2] for row in rows}


async def log_counts(pool: asyncpg.Pool, org_id: uuid.UUID) -> dict[tuple[str, Any], int]:
    rows = await pool.fetch(
        "SELECT type, (occurred_at AT TIME ZONE 'UTC')::date, count(*) FROM events WHERE org_id = $1 GROUP BY 1, 2",
        org_id,
    )
    return {(row[0], row[1]): row[2] for row in rows}


async def test_a_rebuild_builds_beside_the_live_rows_which_readers_see_until_the_swap(
    services: Services, pool: asyncpg.Pool, runner: Any
) -> None:
    org_id = await make_history(services, pool)
    bogus = uuid.uuid4()
    await pool.execute(
        "INSERT INTO analytics.provisioning_activity VALUES ($1, '2001-01-01', 'Bogus', 1)", bogus
    )
    seen_during: dict[str, Any] = {}

    async def before_swap() -> None:
        # Another session, as a reader would: the live table still has the old rows, the new ones are beside it.
        seen_during["live_bogus"] = await pool.fetchval(
            "SELECT count(*) FROM analytics.provisioning_activity WHERE org_id = $1", bogus
        )
        seen_during["shadow"] = await pool.fetchval(
            "SELECT count(*) FROM scimledger_rebuild.provisioning_activity WHERE org_id = $1", org_id
        )
        # The live runner keeps applying new events meanwhile.
        await services.users.provision(org_id, {"userName": "during-rebuild@x.org"}, META)

    async with pool.acquire() as connection:
        replayed = await rebuild_beside(connection, ProvisioningActivity(), before_swap=before_swap)
    assert replayed > 0
    assert seen_during["live_bogus"] == 1
    assert seen_during["shadow"] > 0
    assert (
        await pool.fetchval("SELECT count(*) FROM analytics.provisioning_activity WHERE org_id = $1", bogus)
        == 0
    )
    deadline = time.monotonic() + 10
    while await activity_of(pool, org_id) != await log_counts(pool, org_id):
        assert time.monotonic() < deadline, (
            "after the swap, the live runner did not carry on from the new position"
        )
        await asyncio.sleep(0.05)
    schemas = await pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('scimledger_rebuild', 'scimledger_retired')"
    )
    assert schemas == 0
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL ROLE scimledger_analyst")
        assert await connection.fetchval("SELECT count(*) FROM analytics.provisioning_activity") > 0


async def test_rebuilding_the_access_tables_beside_the_live_ones_gives_the_same_rows(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = await make_history(services, pool)
    async with pool.acquire() as connection:
        await rebuild(connection, AnalyticsAccess())
    before = await analytics_of(pool, org_id)
    async with pool.acquire() as connection:
        await rebuild_beside(connection, AnalyticsAccess())
    assert await analytics_of(pool, org_id) == before
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL ROLE scimledger_analyst")
        await connection.fetchval("SELECT count(*) FROM analytics.membership_intervals")


async def test_analytics_build_no_group_for_a_pair_archived_before_the_group_was_recorded(
    services: Services, pool: asyncpg.Pool
) -> None:
    """As the SCIM projection does: a group recorded after its project or role was archived (as two admins
    racing once could record it) has no row, and nor do the memberships Okta pushed into it while it had one."""
    org_id = uuid.uuid4()
    await services.catalog.create(ROLE, org_id, "R0", ADMIN)
    role_id = await pool.fetchval("SELECT role_id FROM catalog_roles WHERE org_id = $1", org_id)
    await services.catalog.archive(ROLE, org_id, "R0", ADMIN)
    user_id = (await services.users.provision(org_id, {"userName": f"late-{org_id}@x.org"}, META)).user_id
    async with services.store.transaction() as creating:
        project = Project(org_id=str(org_id), name="P0")
        late = Group(org_id=str(org_id), project_id=str(project.id), role_id=str(role_id))
        await creating.save(org_id, [project, late], ADMIN)
    async with services.store.transaction() as filling:
        loaded = await filling.load(org_id, [user_id, late.id])
        user, group = loaded[user_id], loaded[late.id]
        assert isinstance(user, User)
        assert isinstance(group, Group)
        group.link()
        user.join_group(str(late.id), "push")
        await filling.save(org_id, [group, user], META)
    async with pool.acquire() as connection:
        await rebuild(connection, AnalyticsAccess())
    rows = await analytics_of(pool, org_id)
    assert rows["groups"] == [], "analytics built a group the SCIM projection never had"
    assert (rows["memberships"], rows["intervals"]) == ([], [])


async def test_the_migration_that_adds_department_and_manager_fills_them_for_the_users_already_there(
    empty_database: str,
) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        await migrate(connection)
        # The database as it was before migration 0016, with one user who has the extension and one without.
        await connection.execute(
            "ALTER TABLE analytics.users DROP COLUMN department, DROP COLUMN manager_id; "
            "DELETE FROM schema_migrations WHERE version = 16"
        )
        org_id, with_extension, without = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        extension = {ENTERPRISE_USER: {"department": "Sales", "manager": {"value": "boss-1"}}}
        for user_id, resource in ((with_extension, extension), (without, {})):
            await connection.execute(
                "INSERT INTO scim_users (org_id, user_id, user_name, active, resource, version, created, "
                "last_modified, sort_key) VALUES ($1, $2, $3, true, $4::jsonb, 1, now(), now(), 1)",
                org_id,
                user_id,
                str(user_id),
                json.dumps({"userName": str(user_id), **resource}),
            )
            await connection.execute(
                "INSERT INTO analytics.users (org_id, user_id, user_name, active, member, provisioned_at, "
                "last_modified) VALUES ($1, $2, $3, true, true, now(), now())",
                org_id,
                user_id,
                str(user_id),
            )
        assert await migrate(connection) == ["0016_analytics_enterprise.sql"]
        rows = await connection.fetch(
            "SELECT user_id, department, manager_id FROM analytics.users WHERE org_id = $1", org_id
        )
        assert {row[0]: tuple(row[1:]) for row in rows} == {
            with_extension: ("Sales", "boss-1"),
            without: (None, None),
        }
    finally:
        await connection.close()
