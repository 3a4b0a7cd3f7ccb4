import asyncio
import datetime
import uuid
from typing import Any

import asyncpg
import pytest

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.errors import UserNameTaken
from eventstore.records import Metadata, RecordedEvent
from projections import scim_users
from projections.scim_paging import PageEnds
from scim.filter import parse_filter
from scim.query import ListQuery

META = Metadata("token:test")


def listing(text: str) -> ListQuery:
    return ListQuery(parse_filter(text), 1, 100, None, False, None, None)


ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def snapshot(pool: asyncpg.Pool, org_id: uuid.UUID) -> list[dict[str, Any]]:
    # One org's rows: other tests append events without projecting them, which a rebuild rightly adds.
    rows = await pool.fetch("SELECT * FROM scim_users WHERE org_id = $1 ORDER BY user_id", org_id)
    return [dict(row) for row in rows]


async def rebuild(services: Services, pool: asyncpg.Pool) -> int:
    """A rebuild of the SCIM projections as the CLI runs it: on one connection, reading on a second."""
    async with pool.acquire() as connection, pool.acquire() as reader:
        return await services.projection.rebuild(connection, reader)


async def rebuild_with_users(services: Services, pool: asyncpg.Pool, name: str, count: int = 3) -> None:
    """Provision `count` users named after `name` in a new organization, then rebuild."""
    org_id = uuid.uuid4()
    for index in range(count):
        await services.users.provision(org_id, {"userName": f"{name}{index}@x.org"}, META)
    await rebuild(services, pool)


async def test_rebuilding_from_the_log_alone_gives_the_live_rows(
    services: Services, pool: asyncpg.Pool
) -> None:
    users = services.users
    org_id = uuid.uuid4()
    ids = []
    for index in range(20):
        row = await users.provision(
            org_id, {"userName": f"user{index}@x.org", "title": "T", "active": True}, META
        )
        ids.append(row.user_id)
    await users.replace(org_id, ids[0], {"userName": "renamed@x.org", "nickName": "N"}, META)
    await users.replace(org_id, ids[1], {"userName": "user1@x.org", "active": False}, META)
    await users.delete(org_id, ids[2], META)
    await users.replace(org_id, ids[3], {"userName": "user3@x.org", "active": False}, META)
    await users.replace(org_id, ids[3], {"userName": "user3@x.org", "active": True}, META)
    before = await snapshot(pool, org_id)
    assert len(before) == 19
    # Rebuilt from personal values stored encrypted (eventstore/personal_data.py), decrypted as they are read.
    stored = await pool.fetchval(
        "SELECT string_agg(payload::text, ' ') FROM events WHERE org_id = $1", org_id
    )
    assert "renamed@x.org" not in stored
    assert "$erasable" in stored

    replayed = await rebuild(services, pool)

    assert replayed >= 25
    assert await snapshot(pool, org_id) == before


async def test_the_user_name_index_decides_a_race_between_two_orgs_independently(
    services: Services, pool: asyncpg.Pool
) -> None:
    users = services.users
    first, second = uuid.uuid4(), uuid.uuid4()
    await users.provision(first, {"userName": "same@x.org"}, META)
    await users.provision(second, {"userName": "SAME@x.org"}, META)
    async with pool.acquire() as connection:
        assert (await scim_users.query(connection, first, listing('userName eq "Same@X.org"'))).total == 1


async def test_filters_select_the_right_users_in_sql(services: Services, pool: asyncpg.Pool) -> None:
    users = services.users
    org_id = uuid.uuid4()
    profiles = {
        "ann": {
            "userName": "ann@acme.com",
            "title": "Engineer",
            "active": True,
            "emails": [
                {"value": "ann@acme.com", "type": "work", "primary": True},
                {"value": "ann@home.net", "type": "home"},
            ],
            "name": {"givenName": "Ann", "familyName": "Lee"},
            ENTERPRISE: {"department": "R&D"},
        },
        "bob": {
            "userName": "bob@acme.com",
            "title": "Manager",
            "active": False,
            "emails": [{"value": "bob@other.org", "type": "work"}],
            "name": {"givenName": "Bob"},
        },
        "cy": {"userName": "cy@example.org", "active": True, "externalId": "EXT-9"},
    }
    names = {}
    for key, profile in profiles.items():
        row = await users.provision(org_id, profile, META)
        names[row.user_id] = key

    async def matching(text: str) -> set[str]:
        async with pool.acquire() as connection:
            page = await scim_users.query(connection, org_id, listing(text))
        assert page.total == len(page.rows)
        return {names[row.user_id] for row in page.rows}

    assert await matching('userName eq "ANN@ACME.COM"') == {"ann"}
    assert await matching('userName ne "ann@acme.com"') == {"bob", "cy"}
    assert await matching('userName co "ACME"') == {"ann", "bob"}
    assert await matching('userName sw "b"') == {"bob"}
    assert await matching('userName ew ".org"') == {"cy"}
    assert await matching('userName gt "b"') == {"bob", "cy"}
    assert await matching('userName le "bob@acme.com"') == {"ann", "bob"}
    assert await matching("title pr") == {"ann", "bob"}
    assert await matching("not (title pr)") == {"cy"}
    assert await matching("active eq false") == {"bob"}
    assert await matching('active eq "True"') == {"ann", "cy"}
    assert await matching('emails[type eq "work" and value co "@acme.com"]') == {"ann"}
    assert await matching('emails.value ew "home.net"') == {"ann"}
    assert await matching('emails co "other.org"') == {"bob"}
    assert await matching('name.givenName eq "bob" or externalId eq "EXT-9"') == {"bob", "cy"}
    assert await matching('externalId eq "ext-9"') == set()  # externalId is caseExact
    assert await matching(f'{ENTERPRISE}:department eq "r&d"') == {"ann"}
    assert await matching('title eq "Engineer" and (active eq false or name.familyName pr)') == {"ann"}
    assert await matching('meta.created gt "2000-01-01T00:00:00Z"') == {"ann", "bob", "cy"}
    assert await matching('meta.lastModified lt "2000-01-01T00:00:00Z"') == set()
    assert await matching("title eq null") == {"cy"}


async def test_groups_memberships_and_the_catalog_rebuilt_from_the_log_equal_the_live_rows(
    services: Services, pool: asyncpg.Pool
) -> None:
    from app.services.catalog import PROJECT, ROLE
    from scim.group_patch import GroupChange, MembershipStep

    org_id = uuid.uuid4()
    admin = Metadata("admin:test")
    projects = [
        (await services.catalog.create(PROJECT, org_id, name, admin))[0] for name in ("P1", "P2", "P3")
    ]
    await services.catalog.create(ROLE, org_id, "Admin", admin)
    await services.catalog.create(ROLE, org_id, "Viewer", admin)
    users = [
        (await services.users.provision(org_id, {"userName": f"m{index}@x.org"}, META)).user_id
        for index in range(6)
    ]
    groups = [
        row["group_id"]
        for row in await pool.fetch(
            "SELECT group_id FROM scim_groups WHERE org_id = $1 ORDER BY display_name", org_id
        )
    ]
    assert len(groups) == 6

    def change(*steps: MembershipStep) -> GroupChange:
        return GroupChange(steps=list(steps))

    ids = [str(user) for user in users]
    await services.groups.change(org_id, groups[0], change(MembershipStep("add", tuple(ids[:4]))), META)
    await services.groups.change(org_id, groups[0], change(MembershipStep("remove", (ids[1],))), META)
    await services.groups.change(org_id, groups[1], change(MembershipStep("replace", tuple(ids[2:]))), META)
    await services.groups.change(org_id, groups[2], change(MembershipStep("add", (ids[5],))), META)
    await services.groups.unlink(org_id, groups[1], META)
    await services.groups.change(org_id, groups[4], change(MembershipStep("add", (ids[0], ids[5]))), META)
    await services.catalog.rename(PROJECT, org_id, "P1", "Renamed", admin)
    await services.catalog.archive(PROJECT, org_id, str(projects[2]), admin)
    await services.users.delete(org_id, users[3], META)

    async def snapshot() -> dict[str, list[dict[str, Any]]]:
        tables = {
            "scim_users": "user_id",
            "scim_groups": "group_id",
            "group_members": "group_id, user_id",
            "catalog_projects": "project_id",
            "catalog_roles": "role_id",
        }
        return {
            table: [
                dict(row)
                for row in await pool.fetch(
                    f"SELECT * FROM {table} WHERE org_id = $1 ORDER BY {order}", org_id
                )
            ]
            for table, order in tables.items()
        }

    before = await snapshot()
    # g0 keeps m0, m2 and the deleted m3 (whose removal is the reactors' to record), g2 keeps m5.
    assert len(before["group_members"]) == 4
    assert len(before["scim_groups"]) == 4
    assert any(row["display_name"] == "Statsig-Renamed-Admin" for row in before["scim_groups"])
    await rebuild(services, pool)
    assert await snapshot() == before


async def test_a_user_name_filter_is_an_index_lookup_not_a_scan(pool: asyncpg.Pool) -> None:
    """Wrapping the comparison (in coalesce, say) would hide it from the (org_id, scim_fold(userName)) index."""
    from projections.scim_sql import Parameters
    from projections.scim_users import USER_QUERIES

    parameters = Parameters(offset=1)
    where = USER_QUERIES.where(parse_filter('userName eq "Someone@X.org"'), parameters)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        plan = await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT user_id FROM scim_users WHERE scim_users.org_id = $1 AND {where}",
            uuid.uuid4(),
            *parameters.values,
        )
    assert "scim_fold_unicode(user_name)" in str(plan).split("Index Cond", 1)[-1].split("}", 1)[0]


def page_of(start_index: int, count: int) -> ListQuery:
    return ListQuery(None, start_index, count, None, False, None, None)


async def provision_many(services: Services, org_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    return [
        (await services.users.provision(org_id, {"userName": f"u{n}@x.org"}, META)).user_id
        for n in range(count)
    ]


async def import_all(
    pool: asyncpg.Pool, org_id: uuid.UUID, page_ends: PageEnds | None, between_pages: Any = None
) -> list[uuid.UUID]:
    """Okta's import: startIndex 1, 1 + count... until totalResults."""
    seen: list[uuid.UUID] = []
    start, total = 1, None
    while total is None or start <= total:
        async with pool.acquire() as connection:
            page = await scim_users.query(connection, org_id, page_of(start, 40), page_ends)
        total = page.total
        seen += [row.user_id for row in page.rows]
        start += len(page.rows) or 40
        if between_pages is not None:
            await between_pages()
    return seen


async def test_pages_continued_by_key_are_the_pages_offset_gives(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    ids = await provision_many(services, org_id, 101)

    by_offset = await import_all(pool, org_id, None)
    by_key = await import_all(pool, org_id, PageEnds())

    assert by_offset == by_key == ids


async def test_an_import_continued_by_key_skips_no_one_when_users_before_the_page_are_deleted(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    ids = await provision_many(services, org_id, 100)
    deleted: list[uuid.UUID] = []

    async def delete_an_early_user() -> None:
        # Deleting a user already imported shifts every later user one place down in OFFSET terms.
        victim = ids[len(deleted)]
        deleted.append(victim)
        await services.users.delete(org_id, victim, META)

    seen = await import_all(pool, org_id, PageEnds(), delete_an_early_user)

    assert seen == ids, "every user seen once, in order, although users before each page were deleted"
    offset_pages = await import_all(pool, org_id, None)
    assert offset_pages == [user_id for user_id in ids if user_id not in deleted]


async def test_a_rebuild_leaves_the_users_table_all_visible_for_index_only_counts(
    services: Services, pool: asyncpg.Pool
) -> None:
    # Rows copied in bulk are not all-visible until a VACUUM; until then PostgreSQL counts an org's users by
    # reading the table, not the index, on every page of a listing.
    # A snapshot older than the rebuild's commit (an autoanalyze of another table, say) keeps its VACUUM from
    # marking the newest pages all-visible; a rebuild that does not VACUUM never gets there, however often.
    for _ in range(3):
        await rebuild_with_users(services, pool, "visible")
        pages, all_visible = await pool.fetchrow(
            "SELECT relpages, relallvisible FROM pg_class WHERE relname = 'scim_users'"
        )
        if all_visible == pages:
            break
    assert pages > 0
    assert all_visible == pages


async def test_a_rebuild_gathers_statistics_for_the_columns_filters_use_and_not_for_the_document(
    services: Services, pool: asyncpg.Pool
) -> None:
    # The planner never reads statistics of the whole resource document, and gathering them was most of the
    # rebuild's ANALYZE (migration 0009).
    await rebuild_with_users(services, pool, "stats")
    analyzed = {
        row["attname"]
        for row in await pool.fetch("SELECT attname FROM pg_stats WHERE tablename = 'scim_users'")
    }
    assert {"org_id", "user_name", "external_id", "active", "sort_key"} <= analyzed
    assert "resource" not in analyzed


async def test_a_rebuild_leaves_the_users_table_indexes_as_they_were(
    services: Services, pool: asyncpg.Pool
) -> None:
    # Rows copied in bulk still pass through the userName index, which must refuse a duplicate afterwards.
    definitions = (
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'scim_users' "
        "UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'scim_users'::regclass ORDER BY 1, 2"
    )
    before = [tuple(row) for row in await pool.fetch(definitions)]
    assert any(name == "scim_users_user_name_key" for name, _ in before)
    org_id = uuid.uuid4()
    await services.users.provision(org_id, {"userName": "taken@x.org"}, META)

    await rebuild(services, pool)

    assert [tuple(row) for row in await pool.fetch(definitions)] == before
    with pytest.raises(UserNameTaken):
        await services.users.provision(org_id, {"userName": "Taken@X.org"}, META)


async def test_users_provisioned_while_a_rebuild_runs_are_neither_lost_nor_doubled(
    services: Services, pool: asyncpg.Pool
) -> None:
    # The rebuild reads the log on a second connection, through the snapshot of the transaction that holds the
    # tables' locks: a write committed before the locks is in the rebuilt rows, one after lands on top.
    org_id = uuid.uuid4()
    for index in range(50):
        await services.users.provision(org_id, {"userName": f"early{index}@x.org"}, META)

    async def provision(index: int) -> None:
        await asyncio.sleep(index * 0.002)
        await services.users.provision(org_id, {"userName": f"racing{index}@x.org"}, META)

    await asyncio.gather(rebuild(services, pool), *(provision(index) for index in range(30)))

    live = await snapshot(pool, org_id)
    assert sorted(row["user_name"] for row in live) == sorted(
        [f"early{index}@x.org" for index in range(50)] + [f"racing{index}@x.org" for index in range(30)]
    )
    await rebuild(services, pool)
    assert await snapshot(pool, org_id) == live


async def test_a_run_of_membership_changes_applied_at_once_equals_applying_them_one_by_one(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    admin = Metadata("admin:test")
    await services.catalog.create(PROJECT, org_id, "P", admin)
    await services.catalog.create(ROLE, org_id, "Admin", admin)
    await services.catalog.create(ROLE, org_id, "Viewer", admin)
    first, second = [
        row["group_id"]
        for row in await pool.fetch(
            "SELECT group_id FROM scim_groups WHERE org_id = $1 ORDER BY display_name", org_id
        )
    ]
    missing = uuid.uuid4()  # no such group: additions to it change nothing
    kept, replaced, once, twice, gone, stranger, newcomer = (uuid.uuid4() for _ in range(7))
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def change(index: int, kind: str, group: uuid.UUID, user: uuid.UUID) -> RecordedEvent:
        at = start + datetime.timedelta(minutes=index)
        return RecordedEvent(
            10**12 + index, 0, org_id, user, index + 2, kind, 1, {"group_id": str(group), "cause": "push"},
            at, at, "token:test", None,
        )  # fmt: skip

    added, removed = "GroupMemberAdded", "GroupMemberRemoved"
    members_before = [change(0, added, first, kept), change(1, added, first, replaced)]
    run = [
        change(2, added, first, kept),  # already a member: keeps the time it was added
        change(3, removed, first, replaced),
        change(4, added, first, replaced),  # back, with this time
        change(5, added, first, replaced),
        change(6, added, second, once),
        change(7, added, second, twice),
        change(8, removed, second, twice),
        change(9, added, second, twice),
        change(10, removed, second, twice),  # ends removed
        change(11, added, first, gone),
        change(12, removed, first, gone),
        change(13, removed, first, stranger),  # never a member
        change(14, added, missing, stranger),
        change(15, added, second, newcomer),  # the first addition's time stands
        change(16, added, second, newcomer),
    ]

    async def state(connection: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        members = await connection.fetch(
            "SELECT group_id, user_id, added FROM group_members WHERE org_id = $1 ORDER BY 1, 2", org_id
        )
        groups = await connection.fetch(
            "SELECT group_id, version, last_modified FROM scim_groups WHERE org_id = $1 ORDER BY 1", org_id
        )
        return [tuple(row) for row in members], [tuple(row) for row in groups]

    outcomes = []
    async with pool.acquire() as connection:
        for batches in ([[event] for event in run], [run]):
            transaction = connection.transaction()
            await transaction.start()
            await services.projection.groups.apply(connection, members_before)
            for batch in batches:
                await services.projection.groups.apply(connection, batch)
            outcomes.append(await state(connection))
            await transaction.rollback()

    one_by_one, at_once = outcomes
    assert at_once == one_by_one
    members, groups = at_once
    assert sorted(members) == sorted(
        [
            (first, kept, start),
            (first, replaced, start + datetime.timedelta(minutes=4)),
            (second, once, start + datetime.timedelta(minutes=6)),
            (second, newcomer, start + datetime.timedelta(minutes=15)),
        ]
    )
    assert {group: version for group, version, _ in groups} == {first: 10**12 + 13, second: 10**12 + 16}


async def test_a_rebuild_that_fails_midway_leaves_the_rows_as_they_were(
    services: Services, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The users' rows stream into COPY while the log is read: a failure after some of them were sent must
    # roll the whole rebuild back, the TRUNCATE included, and leave both connections usable.
    org_id = uuid.uuid4()
    for index in range(5):
        await services.users.provision(org_id, {"userName": f"kept{index}@x.org"}, META)
    before = await snapshot(pool, org_id)
    row_values = scim_users._row_values
    built = 0

    def failing_after_a_few(*args: Any) -> tuple[Any, ...]:
        nonlocal built
        built += 1
        if built > 3:
            raise RuntimeError("injected failure while folding")
        return row_values(*args)

    monkeypatch.setattr(scim_users, "_row_values", failing_after_a_few)
    async with pool.acquire() as connection, pool.acquire() as reader:
        with pytest.raises(RuntimeError, match="injected failure"):
            await services.projection.rebuild(connection, reader)
        monkeypatch.undo()
        assert await snapshot(pool, org_id) == before
        assert await pool.fetchval("SELECT count(*) FROM scim_users") > 3
        await services.projection.rebuild(connection, reader)
    assert built > 3
    assert await snapshot(pool, org_id) == before
