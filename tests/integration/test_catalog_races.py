"""The catalog stays whole when org admins change it at the same time (issue 18, point 3).

Each trial races two catalog changes of one fresh organization on separate connections, then lets Okta link
and fill every group it can see. After all trials, every organization must hold: each live Project × Role
pair has exactly one group, with the right name; no archived pair has one; the live rows equal a rebuild
from the log; and `audit access` shows an open grant for exactly the memberships there are.
"""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.catalog import group_id_for
from eventstore.records import Metadata
from projections import audit
from scim.group_patch import GroupChange, MembershipStep
from tests.service import CLI

ADMIN = Metadata("admin:race")
OKTA = Metadata("token:race")
TRIALS = 12
TABLES = {
    "scim_groups": "group_id",
    "group_members": "group_id, user_id",
    "catalog_projects": "project_id",
    "catalog_roles": "role_id",
}

Race = Callable[[Services, uuid.UUID], Awaitable[None]]


async def create_racing_create(services: Services, org_id: uuid.UUID) -> None:
    await services.catalog.create(PROJECT, org_id, "P0", ADMIN)
    await services.catalog.create(ROLE, org_id, "R0", ADMIN)
    await asyncio.gather(
        services.catalog.create(PROJECT, org_id, "P1", ADMIN),
        services.catalog.create(ROLE, org_id, "R1", ADMIN),
    )


async def create_racing_archive(services: Services, org_id: uuid.UUID) -> None:
    await services.catalog.create(PROJECT, org_id, "P0", ADMIN)
    for name in ("R0", "R1"):
        await services.catalog.create(ROLE, org_id, name, ADMIN)
    await asyncio.gather(
        services.catalog.create(PROJECT, org_id, "P1", ADMIN),
        services.catalog.archive(ROLE, org_id, "R1", ADMIN),
    )


async def rename_racing_rename(services: Services, org_id: uuid.UUID) -> None:
    for index in range(3):
        await services.catalog.create(PROJECT, org_id, f"P{index}", ADMIN)
        await services.catalog.create(ROLE, org_id, f"R{index}", ADMIN)
    await asyncio.gather(
        services.catalog.rename(PROJECT, org_id, "P0", "Project Zero", ADMIN),
        services.catalog.rename(ROLE, org_id, "R0", "Role Zero", ADMIN),
    )


async def rename_racing_okta_push(services: Services, org_id: uuid.UUID) -> None:
    await services.catalog.create(PROJECT, org_id, "P0", ADMIN)
    await services.catalog.create(ROLE, org_id, "R0", ADMIN)
    user = await services.users.provision(org_id, {"userName": f"pushed-{org_id}@race.example"}, OKTA)
    change = GroupChange(steps=[MembershipStep("add", (str(user.user_id),))])
    group_id = await services.pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", org_id)
    await asyncio.gather(
        services.catalog.rename(PROJECT, org_id, "P0", "Project Zero", ADMIN),
        services.groups.change(org_id, group_id, change, OKTA),
    )


async def okta_fills_every_group(services: Services, org_id: uuid.UUID) -> None:
    """Okta links every group it finds and pushes one member into each."""
    user = await services.users.provision(org_id, {"userName": f"member-{org_id}@race.example"}, OKTA)
    async with services.pool.acquire() as connection:
        group_ids = [
            row[0]
            for row in await connection.fetch("SELECT group_id FROM scim_groups WHERE org_id = $1", org_id)
        ]
    for group_id in group_ids:
        change = GroupChange(steps=[MembershipStep("add", (str(user.user_id),))])
        await services.groups.change(org_id, group_id, change, OKTA)


async def assert_pairs_have_their_groups(pool: asyncpg.Pool, org_id: uuid.UUID, prefix: str) -> None:
    live_pairs = await pool.fetch(
        "SELECT project.project_id, project.name AS project, role.role_id, role.name AS role "
        "FROM catalog_projects AS project JOIN catalog_roles AS role ON role.org_id = project.org_id "
        "WHERE project.org_id = $1 AND NOT project.archived AND NOT role.archived",
        org_id,
    )
    expected = {
        group_id_for(pair["project_id"], pair["role_id"]): f"{prefix}-{pair['project']}-{pair['role']}"
        for pair in live_pairs
    }
    groups = await pool.fetch("SELECT group_id, display_name FROM scim_groups WHERE org_id = $1", org_id)
    assert len(groups) == len({row["group_id"] for row in groups})
    assert {row["group_id"]: row["display_name"] for row in groups} == expected


async def snapshot(pool: asyncpg.Pool, org_ids: list[uuid.UUID]) -> dict[str, list[dict[str, Any]]]:
    return {
        table: [
            dict(row)
            for row in await pool.fetch(
                f"SELECT * FROM {table} WHERE org_id = ANY($1::uuid[]) ORDER BY org_id, {order}", org_ids
            )
        ]
        for table, order in TABLES.items()
    }


async def rebuild(services: Services, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, pool.acquire() as reader:
        await services.projection.rebuild(connection, reader)


async def assert_open_grants_are_the_memberships(
    services: Services, pool: asyncpg.Pool, org_id: uuid.UUID, since: datetime.datetime
) -> None:
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    async with pool.acquire() as connection:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            intervals = await audit.access(connection, org_id, services.settings.group_prefix, since, now)
        members = await connection.fetch(
            "SELECT user_id, group_id FROM group_members WHERE org_id = $1", org_id
        )
    open_grants = {
        (interval.user_id, interval.group_id) for interval in intervals if interval.valid_to is None
    }
    assert open_grants == {(str(row["user_id"]), str(row["group_id"])) for row in members}


async def assert_catalogs_whole(
    services: Services, pool: asyncpg.Pool, org_ids: list[uuid.UUID], since: datetime.datetime
) -> None:
    prefix = services.settings.group_prefix
    for org_id in org_ids:
        await assert_pairs_have_their_groups(pool, org_id, prefix)
    live = await snapshot(pool, org_ids)
    await rebuild(services, pool)
    assert await snapshot(pool, org_ids) == live
    for org_id in org_ids:
        await assert_open_grants_are_the_memberships(services, pool, org_id, since)


@pytest.mark.parametrize(
    "race",
    [create_racing_create, create_racing_archive, rename_racing_rename, rename_racing_okta_push],
    ids=[
        "project create vs role create",
        "project create vs role archive",
        "project rename vs role rename",
        "project rename vs okta push",
    ],
)
async def test_concurrent_catalog_changes_leave_every_live_pair_one_rightly_named_group(
    services: Services, pool: asyncpg.Pool, race: Race
) -> None:
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    org_ids = [uuid.uuid4() for _ in range(TRIALS)]
    for org_id in org_ids:
        await race(services, org_id)
        await okta_fills_every_group(services, org_id)
    await assert_catalogs_whole(services, pool, org_ids, since)


async def test_a_rename_recorded_before_an_okta_push_but_projected_after_it_leaves_the_group_as_a_rebuild_does(
    services: Services, pool: asyncpg.Pool
) -> None:
    """The worst interleaving of a rename and an Okta push to one of its groups, made on purpose: the rename
    records its event, then waits (here, on its project's row) before it renames the groups, while Okta
    records its change and projects it. The group's version and lastModified must be the rebuild's, which
    applies the events in log order, whoever wrote the row last."""
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    org_id = uuid.uuid4()
    await services.catalog.create(PROJECT, org_id, "P0", ADMIN)
    await services.catalog.create(ROLE, org_id, "R0", ADMIN)
    project_id = await pool.fetchval("SELECT project_id FROM catalog_projects WHERE org_id = $1", org_id)
    group_id = await pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", org_id)
    user = await services.users.provision(org_id, {"userName": f"late-{org_id}@race.example"}, OKTA)
    change = GroupChange(steps=[MembershipStep("add", (str(user.user_id),))])
    async with pool.acquire() as gate, gate.transaction():
        await gate.execute(
            "SELECT FROM catalog_projects WHERE org_id = $1 AND project_id = $2 FOR UPDATE",
            org_id,
            project_id,
        )
        rename = asyncio.create_task(services.catalog.rename(PROJECT, org_id, "P0", "Project Zero", ADMIN))
        await waiting_for_locks(pool, 1)
        push = asyncio.create_task(services.groups.change(org_id, group_id, change, OKTA))
        # Okta's push either completes meanwhile, or queues behind the rename: let it get as far as it can.
        for _ in range(600):
            if push.done() or await lock_waiters(pool) >= 2:
                break
            await asyncio.sleep(0.05)
    await asyncio.gather(rename, push)
    await assert_catalogs_whole(services, pool, [org_id], since)


CLI_RACES = {
    "create vs create": (("project", "create", "P1"), ("role", "create", "R2")),
    "create vs archive": (("project", "create", "P1"), ("role", "archive", "R1")),
    "rename vs rename": (("project", "rename", "P0", "Project Zero"), ("role", "rename", "R0", "Role Zero")),
}


async def lock_waiters(pool: asyncpg.Pool) -> int:
    """How many other sessions of the test database wait on a lock."""
    waiting: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    return waiting


async def waiting_for_locks(pool: asyncpg.Pool, count: int) -> None:
    """Until `count` other sessions of the test database wait on a lock."""
    for _ in range(600):
        waiting = await lock_waiters(pool)
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} sessions ever waited on a lock")


@pytest.mark.slow
async def test_two_cli_processes_changing_the_catalog_at_once_leave_it_whole(
    services: Services, pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    org_ids = []
    for _ in range(2):
        for first, second in CLI_RACES.values():
            async with pool.acquire() as connection:
                org_id = (await tenancy.create_org(connection, f"cli-race-{uuid.uuid4().hex[:10]}")).org_id
            org_ids.append(org_id)
            await services.catalog.create(PROJECT, org_id, "P0", ADMIN)
            for name in ("R0", "R1"):
                await services.catalog.create(ROLE, org_id, name, ADMIN)

            def run(args: tuple[str, ...], org: uuid.UUID = org_id) -> subprocess.Popen[str]:
                kind, command, *rest = args
                return subprocess.Popen(
                    [CLI, kind, command, "--org", str(org), *rest],
                    env=cli_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )

            # The processes start up at their own pace; a lock on the catalog's tables holds each one at its
            # first look at them, so that their changes start together, as two admins' would at worst.
            async with pool.acquire() as gate, gate.transaction():
                await gate.execute("LOCK TABLE catalog_projects, catalog_roles IN ACCESS EXCLUSIVE MODE")
                processes = [run(first), run(second)]
                await waiting_for_locks(pool, 2)
            for process in processes:
                _, error = await asyncio.to_thread(process.communicate, timeout=120)
                assert process.returncode == 0, error
            await okta_fills_every_group(services, org_id)
    await assert_catalogs_whole(services, pool, org_ids, since)
