"""The access timeline (projections/access_timeline.py) draws exactly the intervals `audit access` replays from
the log, for a group and for a user, over any window of a scripted Okta history; each bar names the events
that opened and closed it; pages join up to the whole. (Which index it reads by is shown by
bench/console_timeline.py, on a table large enough for the planner's choice to mean something.)"""

from __future__ import annotations

import datetime
import itertools
import uuid
from typing import Any

import asyncpg
import pytest

from app.services.catalog import PROJECT
from app.services.container import Services
from domain.catalog import group_id_for
from eventstore.consumers import process_batch
from eventstore.positions import ensure_position
from projections import audit
from projections.access_timeline import TimelineBar, read_timeline
from projections.analytics import AnalyticsAccess
from scim.group_patch import GroupChange, MembershipStep
from tests.integration.access_workload import ADMIN, OKTA, Org, new_org, run_reactors


async def analytics_caught_up(pool: asyncpg.Pool) -> None:
    """The runner's analytics projection applied to the end of the log, as the runner would apply it."""
    consumer = AnalyticsAccess()
    async with pool.acquire() as connection:
        await ensure_position(connection, consumer.name)
        while (await process_batch(connection, consumer, limit=1000)).examined:
            pass


async def now(pool: asyncpg.Pool) -> datetime.datetime:
    instant: datetime.datetime = await pool.fetchval("SELECT clock_timestamp()")
    return instant


async def push(services: Services, org: Org, group_id: uuid.UUID, kind: str, *users: uuid.UUID) -> None:
    step = MembershipStep(kind, tuple(str(user) for user in users))  # type: ignore[arg-type]
    await services.groups.change(org.org_id, group_id, GroupChange([step]), OKTA)


class History:
    """What the script did, for the assertions: the org, its two groups, the instants between steps."""

    def __init__(self, org: Org, groups: list[uuid.UUID], instants: list[datetime.datetime]) -> None:
        self.org, self.groups, self.instants = org, groups, instants


async def scripted_okta_history(services: Services, pool: asyncpg.Pool) -> History:
    """Okta assigns four people to a group, one leaves and comes back, one is deactivated (the reactors then
    take their access away), one is renamed, one is deleted; another group's project is archived with a
    member in it; a newcomer joins last and still holds access at the end."""
    org = await new_org(services, pool, projects=2, roles=1)
    users = list(org.users)
    first, second = org.live_groups()
    instants = [await now(pool)]

    async def then() -> None:
        instants.append(await now(pool))

    await push(services, org, first, "add", *users[:4])
    await then()
    await push(services, org, second, "add", users[0], users[3])
    await then()
    await push(services, org, first, "remove", users[1])  # leaves
    await then()
    await push(services, org, first, "add", users[1])  # and re-joins
    await then()
    await services.users.replace(
        org.org_id, users[2], {"userName": org.users[users[2]], "active": False}, OKTA
    )
    await run_reactors(services, pool, org)  # the deactivation takes their groups away
    await then()
    renamed = f"renamed-{uuid.uuid4().hex[:6]}@x.org"
    await services.users.replace(org.org_id, users[0], {"userName": renamed, "active": True}, OKTA)
    await then()
    await push(services, org, first, "add", users[5])
    org.users[users[5]] = f"last-name-{uuid.uuid4().hex[:6]}@x.org"  # renamed, then deleted
    await services.users.replace(
        org.org_id, users[5], {"userName": org.users[users[5]], "active": True}, OKTA
    )
    await services.users.delete(org.org_id, users[5], OKTA)
    await run_reactors(services, pool, org)
    await then()
    second_project, role = org.pairs[1]
    assert group_id_for(second_project, role) == second
    await services.catalog.archive(PROJECT, org.org_id, str(second_project), ADMIN)  # revokes users 0 and 3
    await then()
    await push(services, org, first, "add", users[4])  # the newcomer, still held at the end
    await then()
    return History(org, [first, second], instants)


def recorded(bar: TimelineBar) -> tuple[Any, ...]:
    return (
        str(bar.user_id),
        str(bar.group_id),
        bar.granted_at,
        bar.revoked_at,
        bar.granted_by,
        bar.grant_cause,
        bar.revoked_by,
        bar.revoke_cause,
    )


def replayed(interval: audit.AccessInterval) -> tuple[Any, ...]:
    return (
        interval.user_id,
        interval.group_id,
        interval.valid_from,
        interval.valid_to,
        interval.granted_by,
        interval.grant_cause,
        interval.revoked_by,
        interval.revoke_cause,
    )


async def all_bars(pool: asyncpg.Pool, org_id: uuid.UUID, start: Any, end: Any, **subject: Any) -> list[Any]:
    async with pool.acquire() as connection:
        page = await read_timeline(connection, org_id, start, end, **subject)
    assert page.next_cursor is None
    return page.bars


async def test_the_timeline_s_bars_are_audit_access_s_intervals_for_every_window_of_an_okta_history(
    services: Services, pool: asyncpg.Pool
) -> None:
    history = await scripted_okta_history(services, pool)
    org = history.org
    end_of_all = await now(pool)
    events = await pool.fetch(
        "SELECT position, type, stream_id, payload->>'group_id' AS group_id, recorded_at, actor, request_id "
        "FROM events WHERE org_id = $1",
        org.org_id,
    )
    by_position = {row["position"]: row for row in events}
    # Every window between two instants of the script, a window of one instant, and all of it; and windows
    # that start or end exactly when a membership changed, where a bound read as open or closed at the wrong
    # end would keep a bar too many or too few.
    bounds = [*history.instants, end_of_all]
    windows = [*itertools.combinations(bounds, 2), (bounds[3], bounds[3]), (bounds[0], end_of_all)]
    changes = [row["recorded_at"] for row in events if row["type"].startswith("GroupMember")]
    windows += [window for at in changes for window in ((at, at), (bounds[0], at), (at, end_of_all))]
    seen_causes: set[str | None] = set()
    compared = 0
    for start, end in windows:
        async with (
            pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            intervals = await audit.access(connection, org.org_id, services.settings.group_prefix, start, end)
        for subject in [{"group_id": group} for group in history.groups] + [
            {"user_id": user} for user in org.users
        ]:
            bars = await all_bars(pool, org.org_id, start, end, **subject)
            wanted = [
                interval
                for interval in intervals
                if interval.group_id == str(subject.get("group_id", interval.group_id))
                and interval.user_id == str(subject.get("user_id", interval.user_id))
            ]
            assert sorted(map(recorded, bars)) == sorted(map(replayed, wanted)), (start, end, subject)
            compared += len(bars)
            for bar in bars:
                seen_causes.add(bar.revoke_cause)
                assert_clipped_and_linked(bar, start, end, by_position)
    assert compared >= 100, compared
    # Access was taken away by Okta's push, by the reactors (the deactivation, the deletion) and the archive.
    assert {"push", "reactor", "archive"} <= seen_causes, seen_causes
    assert None in seen_causes  # and the newcomer still holds theirs


def assert_clipped_and_linked(
    bar: TimelineBar, start: datetime.datetime, end: datetime.datetime, events: dict[int, Any]
) -> None:
    assert bar.shown_from == max(bar.granted_at, start)
    assert bar.shown_to == min(bar.revoked_at or end, end)
    assert bar.shown_from <= bar.shown_to
    assert bar.continues is (bar.revoked_at is None or bar.revoked_at > end)
    assert bar.began_before is (bar.granted_at < start)
    granted = events[bar.granted_position]
    assert (granted["type"], granted["stream_id"], granted["group_id"]) == (
        "GroupMemberAdded",
        bar.user_id,
        str(bar.group_id),
    )
    assert (granted["recorded_at"], granted["actor"], granted["request_id"]) == (
        bar.granted_at,
        bar.granted_by,
        bar.granted_request_id,
    )
    if bar.revoked_position is None:
        assert bar.open
        return
    revoked = events[bar.revoked_position]
    assert (revoked["type"], revoked["stream_id"], revoked["group_id"]) == (
        "GroupMemberRemoved",
        bar.user_id,
        str(bar.group_id),
    )
    assert (revoked["recorded_at"], revoked["actor"], revoked["request_id"]) == (
        bar.revoked_at,
        bar.revoked_by,
        bar.revoked_request_id,
    )


async def test_names_are_today_s_and_a_deleted_user_keeps_their_last_user_name(
    services: Services, pool: asyncpg.Pool
) -> None:
    history = await scripted_okta_history(services, pool)
    org = history.org
    users = list(org.users)
    window = (history.instants[0], await now(pool))
    # Deleted, before the runner's analytics projection has seen it: the id stands in for the name.
    bars = await all_bars(pool, org.org_id, *window, group_id=history.groups[0])
    assert {bar.user_id: bar.user_name for bar in bars}[users[5]] == str(users[5])
    await analytics_caught_up(pool)
    bars = await all_bars(pool, org.org_id, *window, group_id=history.groups[0])
    names = {bar.user_id: bar.user_name for bar in bars}
    assert names[users[0]].startswith("renamed-")  # the audit names them as they were; the timeline, as now
    # Deleted: the last userName analytics.users holds (a rename's, not the provisioning's).
    assert names[users[5]] == org.users[users[5]]
    assert {bar.project for bar in bars} == {org.projects[history.org.pairs[0][0]]}
    # The group's rows in order of userName, folded; a user's bars in order of grant.
    order = [(bar.user_name.lower(), bar.granted_at) for bar in bars]
    assert order == sorted(order)
    rejoined = [bar for bar in bars if bar.user_id == users[1]]
    assert len(rejoined) == 2
    assert rejoined[0].revoked_at is not None
    assert rejoined[1].open


async def test_pages_join_up_to_the_whole_and_a_cursor_serves_only_its_own_timeline(
    services: Services, pool: asyncpg.Pool
) -> None:
    history = await scripted_okta_history(services, pool)
    org, group = history.org, history.groups[0]
    start, end = history.instants[0], await now(pool)
    whole = await all_bars(pool, org.org_id, start, end, group_id=group)
    assert len(whole) >= 6
    paged: list[TimelineBar] = []
    cursor = None
    async with pool.acquire() as connection:
        while True:
            page = await read_timeline(
                connection, org.org_id, start, end, group_id=group, cursor=cursor, limit=2
            )
            assert len(page.bars) <= 2
            paged += page.bars
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert paged == whole
        with pytest.raises(ValueError, match="another timeline"):
            await read_timeline(connection, org.org_id, start, end, group_id=history.groups[1], cursor=cursor)
        with pytest.raises(ValueError, match="not a cursor"):
            await read_timeline(connection, org.org_id, start, end, group_id=group, cursor="bm90IGpzb24")
        with pytest.raises(ValueError, match="either a group or a user"):
            await read_timeline(connection, org.org_id, start, end)
        with pytest.raises(ValueError, match="reversed"):
            await read_timeline(connection, org.org_id, end, start, group_id=group)
        with pytest.raises(ValueError, match="1 to 10000"):
            await read_timeline(connection, org.org_id, start, end, group_id=group, limit=10_001)
        # Inside a caller's transaction (the statement then runs in a savepoint), the same page.
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            again = await read_timeline(connection, org.org_id, start, end, group_id=group, limit=2)
        assert again.bars == paged[:2]
        # Another organization's grants are never read.
        assert not (await read_timeline(connection, uuid.uuid4(), start, end, group_id=group)).bars
