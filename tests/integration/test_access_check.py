"""The host app's access check (app/services/access.py) answers what `audit access` answers, at any instant,
from the access_grants table the SCIM projection writes inline; a rebuild and migration 0019's backfill give
the same table; concurrent writers leave it equal to the audit's replay."""

from __future__ import annotations

import asyncio
import datetime
import random
import uuid
from importlib import resources
from typing import Any

import asyncpg
import pytest

from app.services.access import AccessDecision
from app.services.catalog import PROJECT
from app.services.container import Services
from domain.catalog import group_id_for
from domain.errors import DomainError, NotFound
from eventstore.store import ConcurrencyConflict
from projections import audit
from scim.group_patch import GroupChange, MembershipStep
from tests.integration.access_workload import ADMIN, OKTA, Org, new_org, random_org, run_reactors

ONE_MICROSECOND = datetime.timedelta(microseconds=1)


async def audit_at(services: Services, pool: asyncpg.Pool, org: Org, at: datetime.datetime) -> list[Any]:
    """`audit access` over the window [at, at], as the CLI runs it."""
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        return await audit.access(connection, org.org_id, services.settings.group_prefix, at, at)


async def membership_instants(pool: asyncpg.Pool, org: Org) -> list[datetime.datetime]:
    """Every instant a membership changed, and a microsecond either side: where a check that read its
    intervals as open or closed at the wrong end would differ from the audit."""
    rows = await pool.fetch(
        "SELECT recorded_at FROM events WHERE org_id = $1 AND type IN ('GroupMemberAdded', 'GroupMemberRemoved')",
        org.org_id,
    )
    return [
        row[0] + delta for row in rows for delta in (-ONE_MICROSECOND, datetime.timedelta(0), ONE_MICROSECOND)
    ]


def expected(intervals: list[Any], user_id: uuid.UUID, project_id: uuid.UUID, role_id: uuid.UUID) -> Any:
    """The audit's interval of the user in the pair's group at the window's instant (the latest granted, if
    two touch it), or None."""
    group = str(group_id_for(project_id, role_id))
    held = [
        interval for interval in intervals if interval.user_id == str(user_id) and interval.group_id == group
    ]
    return max(held, key=lambda interval: interval.valid_from, default=None)


def assert_agrees(decision: AccessDecision, interval: Any, where: str) -> None:
    assert decision.allowed is (interval is not None), where
    if interval is not None:
        assert (decision.since, decision.granted_by) == (interval.valid_from, interval.granted_by), where


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_access_check_equals_audit_access_at_random_instants(
    services: Services, pool: asyncpg.Pool, seed: int
) -> None:
    org = await random_org(services, pool, seed, steps=250)
    causes = await pool.fetch("SELECT DISTINCT revoke_cause FROM access_grants WHERE org_id = $1", org.org_id)
    # Access was taken away in each way there is: by Okta, by its unlink, by the reactors after a
    # deactivation or a removal (and, for some seeds, by an archive).
    assert {row[0] for row in causes} >= {"push", "unlink", "reactor"}
    chance = random.Random(seed)
    boundaries = await membership_instants(pool, org)
    assert len(boundaries) >= 100, "the workload granted and revoked too little to test anything"
    instants = chance.sample(org.instants, 40) + chance.sample(boundaries, 60)
    compared = allowed = 0
    for at in instants:
        intervals = await audit_at(services, pool, org, at)
        for user_id in org.users:
            for project_id, role_id in org.pairs:
                decision = await services.access.check(org.org_id, user_id, project_id, role_id, at)
                interval = expected(intervals, user_id, project_id, role_id)
                assert_agrees(
                    decision, interval, f"seed {seed}, {at.isoformat()}, {user_id}, {project_id}, {role_id}"
                )
                compared += 1
                allowed += decision.allowed
    # Both answers occur, often: a check that always said no (or yes) would not pass.
    assert min(allowed, compared - allowed) >= 100, (allowed, compared)

    # Now, without an instant, is what the audit says of the present, for users active and members of the
    # organization now; the others are denied at once, whatever the reactors have yet to record.
    now = await pool.fetchval("SELECT clock_timestamp()")
    intervals = await audit_at(services, pool, org, now)
    usable = await users_now(pool, org)
    for user_id in org.users:
        for project_id, role_id in org.pairs:
            decision = await services.access.check(org.org_id, user_id, project_id, role_id)
            interval = expected(intervals, user_id, project_id, role_id)
            assert_agrees(decision, interval if usable[user_id] else None, f"now, seed {seed}")


async def users_now(pool: asyncpg.Pool, org: Org) -> dict[uuid.UUID, bool]:
    """Whether each user is, now, active and a member of the organization (their latest leaving or joining
    is not a leaving), read independently of the check's statement."""
    rows = await pool.fetch(
        """SELECT users.user_id, users.active AND coalesce((
               SELECT change.type <> 'UserRemovedFromOrganization' FROM events AS change
               WHERE change.org_id = users.org_id AND change.stream_id = users.user_id
                 AND change.type IN ('UserRemovedFromOrganization', 'UserJoinedOrganization')
               ORDER BY change.version DESC LIMIT 1), true)
           FROM scim_users AS users WHERE users.org_id = $1""",
        org.org_id,
    )
    return dict.fromkeys(org.users, False) | {row[0]: row[1] for row in rows}


async def test_deactivation_denies_now_at_once_and_the_past_keeps_the_audit_s_answer(
    services: Services, pool: asyncpg.Pool
) -> None:
    org = await new_org(services, pool, projects=1, roles=1)
    user_id, user_name = next(iter(org.users.items()))
    ((project_id, role_id),) = org.pairs
    join = MembershipStep("add", (str(user_id),))
    await services.groups.change(org.org_id, group_id_for(project_id, role_id), GroupChange([join]), OKTA)
    granted = await services.access.check(org.org_id, user_id, project_id, role_id)
    assert granted.allowed
    assert (granted.granted_by, granted.request_id, granted.cause) == ("token:okta-test", "req-okta", "push")

    await services.users.replace(org.org_id, user_id, {"userName": user_name, "active": False}, OKTA)
    # Okta deactivated them; until the reactor removes them from the organization, the log has them in the
    # group, and so has the audit: the check of now denies at once, saying why; at an instant since the
    # deactivation, the check keeps the audit's answer.
    deactivated_at = await pool.fetchval("SELECT clock_timestamp()")
    now = await services.access.check(org.org_id, user_id, project_id, role_id)
    assert (now.allowed, now.reason, now.since) == (False, "user_inactive", None)
    by_name = await services.access.check(org.org_id, user_name, project_id, role_id)
    assert by_name == now
    assert (await services.access.check(org.org_id, user_id, project_id, role_id, deactivated_at)).allowed
    assert expected(await audit_at(services, pool, org, deactivated_at), user_id, project_id, role_id)
    await run_reactors(services, pool, org)
    revoked_at = await pool.fetchval(
        "SELECT revoked_at FROM access_grants WHERE org_id = $1 AND user_id = $2", org.org_id, user_id
    )
    revoked = await services.access.check(org.org_id, user_id, project_id, role_id)
    assert (revoked.allowed, revoked.reason) == (False, None)  # the grant itself is no longer held
    # Held at the instant of the revocation, as the audit's window [T, T] has it; not a microsecond after.
    at_revocation = await services.access.check(org.org_id, user_id, project_id, role_id, revoked_at)
    assert at_revocation.allowed
    assert at_revocation.since == granted.since
    after = await services.access.check(
        org.org_id, user_id, project_id, role_id, revoked_at + ONE_MICROSECOND
    )
    assert not after.allowed
    assert (
        await pool.fetchval(
            "SELECT revoked_by || ' ' || revoke_cause FROM access_grants WHERE org_id = $1 AND user_id = $2",
            org.org_id,
            user_id,
        )
        == "reactor:reactor.deactivation_removes_from_organization reactor"
    )


async def test_names_are_resolved_in_the_same_statement_and_a_name_that_names_nothing_is_refused(
    services: Services, pool: asyncpg.Pool
) -> None:
    org = await new_org(services, pool, projects=1, roles=1)
    user_id, user_name = next(iter(org.users.items()))
    ((project_id, role_id),) = org.pairs
    join = MembershipStep("add", (str(user_id),))
    await services.groups.change(org.org_id, group_id_for(project_id, role_id), GroupChange([join]), OKTA)
    await services.catalog.rename(PROJECT, org.org_id, str(project_id), "Apollo", ADMIN)

    by_names = await services.access.check(org.org_id, user_name.upper(), "APOLLO", "r0")
    by_ids = await services.access.check(org.org_id, user_id, project_id, role_id)
    assert by_names == by_ids
    assert by_ids.allowed
    mixed = await services.access.check(org.org_id, str(user_id), "apollo", str(role_id))
    assert mixed == by_ids
    with pytest.raises(NotFound, match="live project named 'P0'"):
        await services.access.check(org.org_id, user_id, "P0", role_id)  # its name before the rename
    with pytest.raises(NotFound, match=r"userName 'nobody@x\.org'"):
        await services.access.check(org.org_id, "nobody@x.org", project_id, role_id)
    # An id is read without a look at whether it names anything: it is simply not allowed.
    stranger = await services.access.check(org.org_id, uuid.uuid4(), project_id, role_id)
    assert not stranger.allowed
    # Another organization's grants are never read.
    other = await services.access.check(uuid.uuid4(), user_id, project_id, role_id)
    assert not other.allowed


async def test_a_check_by_ids_is_one_statement_that_reads_the_primary_key_backwards(
    counted_services: tuple[Services, list[str]], services: Services, pool: asyncpg.Pool
) -> None:
    counted, statements = counted_services
    org = await new_org(services, pool, projects=1, roles=1)
    user_id = next(iter(org.users))
    ((project_id, role_id),) = org.pairs
    now = datetime.datetime.now(datetime.UTC)
    for at in (None, now):
        statements.clear()
        await counted.access.check(org.org_id, user_id, project_id, role_id, at)
        assert len(statements) == 1, statements
        async with pool.acquire() as connection:
            explaining = connection.transaction()
            await explaining.start()
            try:
                # The table of a test database is too small for the planner to bother with an index: what
                # matters is that the statement can be answered by the key alone, read from the instant
                # backwards.
                await connection.execute("SET LOCAL enable_seqscan = off")
                # The access timeline's index of a group's grants (migration 0023) also leads with org_id, and
                # for a table this small it serves an org's few rows as cheaply: the planner takes either. It
                # is dropped for this EXPLAIN alone (rolled back below); bench/console_timeline.py shows the
                # key chosen for an organization with 10,000 members, where the choice is not close.
                await connection.execute("DROP INDEX access_grants_group")
                arguments = [org.org_id, user_id, project_id, role_id] + ([] if at is None else [at])
                explained = await connection.fetch(f"EXPLAIN {statements[0]}", *arguments)
            finally:
                await explaining.rollback()
            plan = "\n".join(row[0] for row in explained)
        assert "Index Scan Backward using access_grants_pkey" in plan, plan
        assert "Sort" not in plan, plan
        if at is None:
            # Now also reads the user as they are, by scim_users' key and by the index of their leavings and
            # joinings of the organization (migration 0021), in the same statement.
            # Which of scim_users' indexes that lead with org_id the planner takes for a table this small is
            # its choice (the primary key or the userName key); that it takes one, never a scan, is the point.
            assert "on scim_users user_now" in plan, plan
            assert "Seq Scan" not in plan, plan
            assert "Index Scan Backward using events_organization_membership" in plan, plan


async def grants_of(
    pool: asyncpg.Pool, org_id: uuid.UUID, table: str = "access_grants"
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT * FROM {table} WHERE org_id = $1 ORDER BY user_id, group_id, granted_at, granted_position",
        org_id,
    )
    return [dict(row) for row in rows]


async def test_a_rebuild_and_the_migrations_backfill_give_the_table_written_inline(
    services: Services, pool: asyncpg.Pool
) -> None:
    org = await random_org(services, pool, 7, steps=200)
    # And one grant still open at the end, whatever the seed left.
    newcomer = (
        await services.users.provision(org.org_id, {"userName": f"{uuid.uuid4()}@x.org"}, OKTA)
    ).user_id
    join = GroupChange([MembershipStep("add", (str(newcomer),))])
    await services.groups.change(org.org_id, org.live_groups()[0], join, OKTA)
    inline = await grants_of(pool, org.org_id)
    assert len(inline) >= 15
    assert any(row["revoked_at"] is None for row in inline)
    assert any(row["revoked_at"] for row in inline)
    assert {row["revoke_cause"] for row in inline} >= {"push", "reactor"}

    async with pool.acquire() as connection, pool.acquire() as reader:
        await services.projection.rebuild(connection, reader)
    assert await grants_of(pool, org.org_id) == inline

    # The migrations' backfills (0019's rows, then 0023's revocation positions), run again into a temporary
    # table of the same shape, which their statements find first on the search path.
    backfills = [
        sql[sql.index("-- backfill:") :]
        for sql in (
            (resources.files("migrations") / name).read_text()
            for name in ("0019_access_grants.sql", "0023_access_grants_revoked_position.sql")
        )
    ]
    assert any(row["revoked_position"] for row in inline)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "CREATE TEMP TABLE access_grants (LIKE public.access_grants INCLUDING ALL) ON COMMIT DROP"
        )
        for backfill in backfills:
            await connection.execute(backfill)
        backfilled = await grants_of(connection, org.org_id, "pg_temp.access_grants")  # type: ignore[arg-type]
    assert backfilled == inline


async def test_concurrent_writers_leave_the_grants_the_audit_replays(
    services: Services, pool: asyncpg.Pool
) -> None:
    org = await new_org(services, pool, projects=2, roles=1)
    groups = org.live_groups()
    users = list(org.users)

    async def writer(seed: int) -> None:
        chance = random.Random(seed)
        for _ in range(25):
            user_id = chance.choice(users)
            try:
                if chance.random() < 0.15:
                    name = org.users[user_id]
                    active = chance.random() < 0.6
                    await services.users.replace(
                        org.org_id, user_id, {"userName": name, "active": active}, OKTA
                    )
                else:
                    kind = chance.choice(["add", "add", "remove"])
                    change = GroupChange([MembershipStep(kind, (str(user_id),))])  # type: ignore[arg-type]
                    await services.groups.change(org.org_id, chance.choice(groups), change, OKTA)
            except (DomainError, ConcurrencyConflict):
                pass  # refused, or lost ten races in a row: either way nothing was recorded

    async def checker() -> int:
        # Reads while the writers write: every answer is well formed, none waits on a writer's lock.
        checks = 0
        while not done.is_set():
            for user_id in users:
                decision = await services.access.check(org.org_id, user_id, *org.pairs[0])
                assert decision.allowed is (decision.since is not None)
                checks += 1
        return checks

    done = asyncio.Event()
    checking = asyncio.create_task(checker())
    await asyncio.gather(*(writer(seed) for seed in range(8)))
    done.set()
    assert await checking > 0

    # Every grant and revocation, as the table holds them, is what the audit replays from the log.
    start = await pool.fetchval("SELECT min(recorded_at) FROM events WHERE org_id = $1", org.org_id)
    end = await pool.fetchval("SELECT clock_timestamp()")
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        intervals = await audit.access(connection, org.org_id, services.settings.group_prefix, start, end)
    replayed = sorted(
        (uuid.UUID(i.user_id), uuid.UUID(i.group_id), i.valid_from, i.valid_to, i.granted_by, i.revoked_by)
        for i in intervals
    )
    table = sorted(
        (
            row["user_id"],
            row["group_id"],
            row["granted_at"],
            row["revoked_at"],
            row["granted_by"],
            row["revoked_by"],
        )
        for row in await grants_of(pool, org.org_id)
    )
    assert len(table) >= 20
    assert table == replayed


async def test_a_membership_closed_and_opened_again_by_one_append_keeps_both_grants(
    services: Services, pool: asyncpg.Pool
) -> None:
    """No service records it today, but the aggregate allows it: the revocation must land before the new grant
    (the projection then writes them in two statements rather than one)."""
    org = await new_org(services, pool, projects=1, roles=1)
    user_id = next(iter(org.users))
    ((project_id, role_id),) = org.pairs
    group_id = group_id_for(project_id, role_id)
    await services.groups.change(
        org.org_id, group_id, GroupChange([MembershipStep("add", (str(user_id),))]), OKTA
    )
    async with services.store.transaction() as transaction:
        user = (await transaction.load(org.org_id, [user_id]))[user_id]
        user.leave_group(str(group_id), "push")
        user.join_group(str(group_id), "push")
        await transaction.save(org.org_id, [user], ADMIN)

    grants = await grants_of(pool, org.org_id)
    assert [(row["granted_by"], row["revoked_by"]) for row in grants] == [
        ("token:okta-test", "admin:test"),
        ("admin:test", None),
    ]
    now = await pool.fetchval("SELECT clock_timestamp()")
    decision = await services.access.check(org.org_id, user_id, project_id, role_id)
    assert_agrees(
        decision, expected(await audit_at(services, pool, org, now), user_id, project_id, role_id), "now"
    )
    assert decision.granted_by == "admin:test"
