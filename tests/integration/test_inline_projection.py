"""The SCIM projection belongs to the unit of work: registered once with the store, written by every append
in the append's own transaction, so that a writer cannot leave the read model behind the log, and at no
round trip more than when each writer projected by hand."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from app.services.org_schemas import parse
from domain.catalog import Project
from domain.users import User
from eventstore.records import EVENT_COLUMNS, Metadata, RecordedEvent
from reactors.membership import RemovalDeactivates
from scim.group_patch import GroupChange, MembershipStep

ADMIN = Metadata("admin:unit-of-work")
OKTA = Metadata("token:unit-of-work")


async def test_saving_through_the_store_writes_the_scim_rows_without_any_explicit_apply(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    user = User(org_id=str(org_id), attributes={"userName": "saved@store.example"}, active=True)
    project = Project(org_id=str(org_id), name="Saved")
    async with services.store.transaction() as transaction:
        await transaction.save(org_id, [user, project], ADMIN)
    rows = await pool.fetch("SELECT user_name, version FROM scim_users WHERE org_id = $1", org_id)
    assert [tuple(row) for row in rows] == [("saved@store.example", 1)]
    assert await pool.fetchval("SELECT name FROM catalog_projects WHERE org_id = $1", org_id) == "Saved"

    async with services.store.autocommit() as transaction:
        user.set_active(False)
        await transaction.save(org_id, [user], ADMIN)
    rows = await pool.fetch("SELECT active, version FROM scim_users WHERE org_id = $1", org_id)
    assert [tuple(row) for row in rows] == [(False, 2)]


async def test_events_appended_without_their_aggregate_are_projected_too(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    user = User(org_id=str(org_id), attributes={"userName": "raw@store.example"}, active=True)
    async with services.store.transaction() as transaction:
        await transaction.append(org_id, user.id, 0, user.collect_events(), ADMIN)
    rows = await pool.fetch("SELECT user_name, active FROM scim_users WHERE org_id = $1", org_id)
    assert [tuple(row) for row in rows] == [("raw@store.example", True)]


async def statements_of(statements: list[str], write: Callable[[], Awaitable[Any]]) -> list[str]:
    """The leading words of the statements one write sends, once asyncpg knows the types it meets."""
    await write()
    statements.clear()
    await write()
    return [" ".join(statement.split()[:3]) for statement in statements if "pg_notify" not in statement]


async def test_a_write_takes_the_round_trips_it_took_when_writers_projected_by_hand(
    counted_services: tuple[Services, list[str]], pool: asyncpg.Pool
) -> None:
    """Counted on main before the projection moved into the store: 1 statement for a POST /Users, 2 for a
    PUT, 8 for a project's creation, 10 for a member's addition to a group, 7 for a schema's declaration;
    the same statements now. A reactor's decision on one user took 5 and now takes 4 (see the last test)."""
    services, statements = counted_services
    org_id = uuid.uuid4()
    names = iter(range(100))

    def provision() -> Awaitable[Any]:
        return services.users.provision(org_id, {"userName": f"u{next(names)}@count.example"}, OKTA)

    assert await statements_of(statements, provision) == ["WITH appended AS"]  # the row rides in the append

    user_id = (await provision()).user_id
    titles = iter(range(100))

    def replace() -> Awaitable[Any]:
        attributes = {"userName": "put@count.example", "title": f"T{next(titles)}"}
        return services.users.replace(org_id, user_id, attributes, OKTA)

    assert await statements_of(statements, replace) == ["SELECT position, tx,", "WITH appended AS"]

    projects = iter(range(100))

    def create_project() -> Awaitable[Any]:
        return services.catalog.create(PROJECT, org_id, f"P{next(projects)}", ADMIN)

    creating = await statements_of(statements, create_project)
    assert [statement.split()[0] for statement in creating] == [
        "BEGIN;", "SELECT", "SELECT", "SAVEPOINT", "INSERT", "INSERT", "RELEASE", "COMMIT;"
    ]  # fmt: skip

    await services.catalog.create(ROLE, org_id, "R", ADMIN)
    group_id = await pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1 LIMIT 1", org_id)
    members = iter([(await provision()).user_id for _ in range(2)])

    def add_member() -> Awaitable[Any]:
        change = GroupChange(steps=[MembershipStep("add", (str(next(members)),))])
        return services.groups.change(org_id, group_id, change, OKTA)

    adding = await statements_of(statements, add_member)
    assert [statement.split()[0] for statement in adding] == [
        "BEGIN;", "SELECT", "SELECT", "SELECT", "SELECT", "INSERT", "UPDATE", "WITH", "SELECT", "COMMIT;"
    ]  # fmt: skip

    urns = iter(range(100))

    def declare() -> Awaitable[Any]:
        document = {"id": f"urn:acme:count:{next(urns)}", "attributes": [{"name": "badge"}]}
        return services.schemas.declare(org_id, parse(json.dumps(document).encode()), ADMIN)

    assert [statement.split()[0] for statement in await statements_of(statements, declare)] == [
        "BEGIN;", "SELECT", "SELECT", "SELECT", "INSERT", "INSERT", "COMMIT;"
    ]  # fmt: skip


async def test_a_reactors_decision_on_one_user_rides_in_its_append(
    counted_services: tuple[Services, list[str]], pool: asyncpg.Pool
) -> None:
    """Before, the reactor appended and then updated the row: BEGIN, load, append, update, COMMIT. Saved
    through the store, one user's decision takes the path of a SCIM write to one user: the row rides in the
    append's statement, one round trip fewer."""
    services, statements = counted_services
    org_id = uuid.uuid4()
    user_id = (await services.users.provision(org_id, {"userName": "reacted@count.example"}, OKTA)).user_id
    await services.users.remove_from_organization(org_id, user_id, ADMIN)
    rows = await pool.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND type = 'UserRemovedFromOrganization'",
        user_id,
    )
    statements.clear()
    async with services.store.transaction() as transaction:
        await RemovalDeactivates().handle(transaction, [RecordedEvent(*row) for row in rows])
    assert [" ".join(statement.split()[:3]) for statement in statements if "pg_notify" not in statement] == [
        "BEGIN;", "SELECT position, tx,", "WITH appended AS", "COMMIT;"
    ]  # fmt: skip
    active = await pool.fetchval("SELECT active FROM scim_users WHERE user_id = $1", user_id)
    assert active is False
