"""`scimledger group repair`: a catalog damaged by admins racing before catalog changes were serialised is
made whole, with events for every grant it ends. The damage is made as the races made it: a catalog change
that does not take the catalog's lock, interleaved by hand with one that does."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import asyncpg
import pytest

from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.catalog import Group, Project, group_id_for
from eventstore.records import Metadata
from projections import audit
from scim.group_patch import GroupChange, MembershipStep
from tests.integration.test_catalog_races import (
    assert_catalogs_whole,
    assert_pairs_have_their_groups,
    waiting_for_locks,
)
from tests.service import run_cli

ADMIN = Metadata("admin:racing")
OKTA = Metadata("token:okta")


async def catalog_ids(pool: asyncpg.Pool, table: str, key: str, org_id: uuid.UUID) -> dict[str, uuid.UUID]:
    rows = await pool.fetch(f"SELECT name, {key} FROM {table} WHERE org_id = $1", org_id)
    return {row[0]: row[1] for row in rows}


async def damaged_catalog(services: Services, pool: asyncpg.Pool, org_id: uuid.UUID) -> uuid.UUID:
    """Three damages, one of each kind the races left; returns the id of the group of an archived role that
    Okta linked and filled."""
    catalog, store = services.catalog, services.store
    await catalog.create(PROJECT, org_id, "P0", ADMIN)
    for name in ("R0", "R1", "R2"):
        await catalog.create(ROLE, org_id, name, ADMIN)
    roles = await catalog_ids(pool, "catalog_roles", "role_id", org_id)

    # `project create P1` racing `role archive R1`: the create pairs P1 with R1, which the archive does not see.
    async with store.transaction() as creating:
        project = Project(org_id=str(org_id), name="P1")
        groups = [
            Group(org_id=str(org_id), project_id=str(project.id), role_id=str(role))
            for role in roles.values()
        ]
        await creating.save(org_id, [project, *groups], ADMIN)
        await catalog.archive(ROLE, org_id, "R1", ADMIN)
    stray = group_id_for(project.id, roles["R1"])
    user = await services.users.provision(org_id, {"userName": f"stray-{org_id}@repair.example"}, OKTA)
    change = GroupChange(steps=[MembershipStep("add", (str(user.user_id),))])
    await services.groups.change(org_id, stray, change, OKTA)

    # `project create P2` racing `role create R3`: neither saw the other, and the pairs got no group.
    async with store.transaction() as creating:
        await creating.save(org_id, [Project(org_id=str(org_id), name="P2")], ADMIN)

    # `project rename P0` racing `role rename R0`: the role's rename rewrote the name from the old project name.
    async with store.transaction() as renaming:
        project_id = (await catalog_ids(pool, "catalog_projects", "project_id", org_id))["P0"]
        renamed = (await renaming.load(org_id, [project_id]))[project_id]
        renamed.rename("Project Zero")
        await renaming.save(org_id, [renamed], ADMIN)
        role_rename = asyncio.create_task(catalog.rename(ROLE, org_id, "R0", "Role Zero", ADMIN))
        await waiting_for_locks(pool, 1)
    await role_rename
    return stray


async def test_repair_records_the_missing_groups_and_the_ends_of_stray_grants_and_makes_the_catalog_whole(
    services: Services, pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"repair-{uuid.uuid4().hex[:10]}")
    stray = await damaged_catalog(services, pool, org.org_id)
    names = await pool.fetch("SELECT display_name FROM scim_groups WHERE org_id = $1", org.org_id)
    assert {row[0] for row in names} == {
        "Statsig-Project Zero-R2",
        "Statsig-P0-Role Zero",  # stale: the project is Project Zero
        "Statsig-P1-Role Zero",
        "Statsig-P1-R1",  # of an archived role
        "Statsig-P1-R2",
    }  # and no P2 groups
    with pytest.raises(AssertionError):
        await assert_pairs_have_their_groups(pool, org.org_id, "Statsig")

    report = run_cli(cli_env, "group", "repair", "--org", org.name).stdout
    assert report.strip() == (
        "created 2 missing group(s); retired 1 group(s) of archived projects or roles, revoking 1 "
        "membership(s); corrected the name of 1 group(s)"
    )

    await assert_catalogs_whole(services, pool, [org.org_id], since)
    # The repair's own events, recorded as the CLI's admin's (the damage was recorded as admin:racing).
    ended = await pool.fetch(
        "SELECT type, payload->>'cause' FROM events WHERE org_id = $1 AND actor LIKE 'admin:%' "
        "AND actor <> $3 AND (stream_id = $2 OR payload->>'group_id' = $2::text) ORDER BY position",
        org.org_id,
        stray,
        ADMIN.actor,
    )
    assert [tuple(row) for row in ended] == [("GroupMemberRemoved", "archive"), ("GroupUnlinked", "archive")]
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        grants = await audit.access(
            connection, org.org_id, "Statsig", since, datetime.datetime.now(datetime.UTC), role="R1"
        )
    assert [(grant.revoke_cause, grant.valid_to is not None) for grant in grants] == [("archive", True)]

    again = run_cli(cli_env, "group", "repair", "--org", org.name).stdout
    assert again.strip() == (
        "created 0 missing group(s); retired 0 group(s) of archived projects or roles, revoking 0 "
        "membership(s); corrected the name of 0 group(s)"
    )


async def test_a_group_recorded_after_its_role_was_archived_never_reaches_scim_live_or_rebuilt(
    services: Services, pool: asyncpg.Pool
) -> None:
    # What a `project create` that read the roles just before a `role archive` committed recorded, when its
    # transaction took its id after the archive's: the log has the group after the role's archive.
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    org_id = uuid.uuid4()
    await services.catalog.create(ROLE, org_id, "R0", ADMIN)
    role_id = (await catalog_ids(pool, "catalog_roles", "role_id", org_id))["R0"]
    await services.catalog.archive(ROLE, org_id, "R0", ADMIN)
    async with services.store.transaction() as creating:
        project = Project(org_id=str(org_id), name="P0")
        group = Group(org_id=str(org_id), project_id=str(project.id), role_id=str(role_id))
        await creating.save(org_id, [project, group], ADMIN)
    assert await pool.fetch("SELECT * FROM scim_groups WHERE org_id = $1", org_id) == []
    await assert_catalogs_whole(services, pool, [org_id], since)
