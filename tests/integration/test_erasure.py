"""Erasing a person from an append-only, sealed log (issue 23): afterwards no table of any schema and no event
payload holds their e-mail address, userName or name, while the seal chain verifies, a full rebuild and an
as-of replay still run (showing "[erased]"), and the figures about everyone (group member counts, activity)
are what they were. Also: who may be erased, and the retention policy's sweep.

NOTE: the search of the events' payloads, and the "[erased]" of the replays, hold once the personal attributes
of events are stored encrypted with the person's data key (eventstore/personal_data.py): until then the
payloads hold them in the clear, and the log is append-only.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from typing import Any

import asyncpg
import pytest

from app.services import retention, tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from app.services.retention import RetentionPolicy, RetentionSweeper
from domain.errors import NotErasable, NotFound
from domain.users import RETENTION_ACTOR
from eventstore.personal_data import ERASED
from eventstore.positions import position_of
from eventstore.rebuilds import rebuild_beside
from eventstore.records import LogPosition, Metadata
from eventstore.runner import Runner
from projections import audit, seals
from projections.activity import ProvisioningActivity
from projections.analytics import AnalyticsAccess
from scim.group_patch import GroupChange, MembershipStep

OKTA = Metadata("token:erasure-test")
ADMIN = Metadata("admin:erasure-test")
DPO = Metadata("admin:data-protection-officer")
REASON = "GDPR Art. 17 request, ticket DPO-1142"


class Person:
    """A person with values found nowhere else in the database."""

    def __init__(self) -> None:
        mark = uuid.uuid4().hex[:10]
        self.user_name = f"zora.quill.{mark}@erasure.example"
        self.email = f"zq.{mark}@home.example"
        self.given = f"Zorabelle{mark}"
        self.family = f"Quillfeather{mark}"

    @property
    def needles(self) -> list[str]:
        return [self.email, self.user_name, self.given, self.family]

    def attributes(self, title: str = "Engineer") -> dict[str, Any]:
        return {
            "userName": self.user_name,
            "name": {"givenName": self.given, "familyName": self.family},
            "displayName": f"{self.given} {self.family}",
            "emails": [{"value": self.email, "type": "work", "primary": True}],
            "title": title,
        }


async def caught_up(pool: asyncpg.Pool, services: Services, org_id: uuid.UUID) -> None:
    """Until every consumer has passed the organization's last event, and the reactors decided nothing new."""
    deadline = time.monotonic() + 60
    while True:
        async with pool.acquire() as connection:
            last = await connection.fetchrow(
                "SELECT tx, position FROM events WHERE org_id = $1 ORDER BY tx DESC, position DESC LIMIT 1",
                org_id,
            )
            head = LogPosition(last["tx"], last["position"])
            positions = [await position_of(connection, consumer.name) for consumer in services.consumers]
        if all(position >= head for position in positions):
            return
        assert time.monotonic() < deadline, "the runner did not catch up"
        await asyncio.sleep(0.05)


async def user_tables(connection: asyncpg.Connection) -> list[tuple[str, str]]:
    """Every table of every schema but the system's, found in the catalog: a table added later is searched
    without anyone listing it here."""
    rows = await connection.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    )
    return [(row[0], row[1]) for row in rows]


async def tables_quoting(connection: asyncpg.Connection, needles: list[str], *, events: bool) -> list[str]:
    """`schema.table: needle` for each table (the events table alone if `events`, every other one if not)
    where some row, cast to text, holds a needle, ignoring case."""
    found = []
    for schema, table in await user_tables(connection):
        if (table == "events" and schema == "public") != events:
            continue
        for needle in needles:
            hit = await connection.fetchval(
                f'SELECT EXISTS (SELECT FROM "{schema}"."{table}" AS row_ '
                "WHERE strpos(lower(row_::text), lower($1)) > 0)",
                needle,
            )
            if hit:
                found.append(f"{schema}.{table}: {needle}")
    return found


async def payloads_quoting(
    connection: asyncpg.Connection, org_id: uuid.UUID, needles: list[str]
) -> list[str]:
    """The needles found in the bytes of the organization's event payloads, as stored."""
    found = []
    for needle in needles:
        if await connection.fetchval(
            "SELECT EXISTS (SELECT FROM events WHERE org_id = $1 "
            "AND position(convert_to(lower($2), 'UTF8') IN convert_to(lower(payload::text), 'UTF8')) > 0)",
            org_id,
            needle,
        ):
            found.append(needle)
    return found


async def figures(connection: asyncpg.Connection, org_id: uuid.UUID) -> dict[str, Any]:
    """What must stay true about everyone: each group's member count (SCIM, analytics), each group's
    intervals of access, the grants the access check reads, and the activity per day and type (an erasure
    adds its own type and nothing else)."""
    return {
        "scim members": await connection.fetch(
            "SELECT group_id, count(*) FROM group_members WHERE org_id = $1 GROUP BY 1 ORDER BY 1", org_id
        ),
        "analytics members": await connection.fetch(
            "SELECT group_id, count(*) FROM analytics.memberships WHERE org_id = $1 GROUP BY 1 ORDER BY 1",
            org_id,
        ),
        "intervals": await connection.fetch(
            "SELECT user_id, group_id, valid_from, valid_to, granted_by, revoked_by "
            "FROM analytics.membership_intervals WHERE org_id = $1 ORDER BY 1, 2, 3",
            org_id,
        ),
        "grants": await connection.fetch(
            "SELECT user_id, group_id, granted_at, revoked_at FROM access_grants WHERE org_id = $1 ORDER BY 1, 2, 3",
            org_id,
        ),
        "activity": await connection.fetch(
            "SELECT day, event_type, events FROM analytics.provisioning_activity "
            "WHERE org_id = $1 AND event_type <> 'UserErased' ORDER BY 1, 2",
            org_id,
        ),
        "users": await connection.fetchval("SELECT count(*) FROM scim_users WHERE org_id = $1", org_id),
    }


async def full_rebuild(pool: asyncpg.Pool, services: Services) -> None:
    """The SCIM projection and the analytics tables, recomputed from the log alone."""
    async with pool.acquire() as connection, pool.acquire() as reader:
        await services.projection.rebuild(connection, reader)
        await rebuild_beside(connection, AnalyticsAccess())
        await rebuild_beside(connection, ProvisioningActivity())


async def as_of_report(
    connection: asyncpg.Connection, org_id: uuid.UUID, at: datetime.datetime
) -> dict[str, Any]:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        return (await audit.as_of(connection, org_id, at, "Statsig-")).to_report()


async def verified(connection: asyncpg.Connection, org_id: uuid.UUID) -> seals.Verdict:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        return await seals.verify(connection, org_id, max_unsealed_age=datetime.timedelta(hours=1))


async def a_history(services: Services, pool: asyncpg.Pool, person: Person) -> tuple[uuid.UUID, uuid.UUID]:
    """An organization where the person was provisioned, put in two groups, updated, deactivated (the
    reactors then removed them from the organization and revoked their groups) and deleted; and a colleague
    who stays, in one of the same groups."""
    org_id = uuid.uuid4()
    async with pool.acquire() as connection:
        await connection.execute("INSERT INTO orgs (org_id, name) VALUES ($1, $2)", org_id, f"erase-{org_id}")
    await services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    await services.catalog.create(ROLE, org_id, "Viewer", ADMIN)
    user_id = (await services.users.provision(org_id, person.attributes(), OKTA)).user_id
    colleague = (await services.users.provision(org_id, {"userName": f"colleague-{org_id}"}, OKTA)).user_id
    groups = {
        row["display_name"]: row["group_id"]
        for row in await pool.fetch(
            "SELECT display_name, group_id FROM scim_groups WHERE org_id = $1", org_id
        )
    }
    for name, members in (("Apollo-Admin", (user_id, colleague)), ("Apollo-Viewer", (user_id,))):
        [group_id] = [group for display, group in groups.items() if display.endswith(name)]
        step = MembershipStep("add", tuple(str(member) for member in members))
        await services.groups.change(org_id, group_id, GroupChange(steps=[step]), OKTA)
    await services.users.replace(
        org_id, user_id, {**person.attributes("Staff Engineer"), "active": True}, OKTA
    )
    await services.users.replace(
        org_id, user_id, {**person.attributes("Staff Engineer"), "active": False}, OKTA
    )
    await caught_up(pool, services, org_id)
    await services.users.delete(org_id, user_id, OKTA)
    return org_id, user_id


async def test_erasure_leaves_no_trace_of_the_person_and_every_figure_and_proof_intact(
    services: Services, pool: asyncpg.Pool, runner: Runner
) -> None:
    person = Person()
    org_id, user_id = await a_history(services, pool, person)
    await caught_up(pool, services, org_id)
    async with pool.acquire() as connection:
        # A moment the person was a member, in their groups.
        while_member = await connection.fetchval(
            "SELECT recorded_at FROM events WHERE org_id = $1 AND stream_id = $2 AND type = 'UserProfileUpdated'",
            org_id,
            user_id,
        )
        before_verdict = await verified(connection, org_id)
        before_figures = await figures(connection, org_id)
        before_as_of = await as_of_report(connection, org_id, while_member)
    assert before_verdict.problem is None
    assert [user["userName"] for user in before_as_of["users"]].count(person.user_name) == 1
    await full_rebuild(pool, services)
    async with pool.acquire() as connection:
        assert await figures(connection, org_id) == before_figures  # the rebuild agrees with the live rows

    erasure = await services.erasure.erase(org_id, user_id, REASON, DPO)
    assert (erasure.actor, erasure.reason) == (DPO.actor, REASON)
    await caught_up(pool, services, org_id)

    async with pool.acquire() as connection:
        recorded = await connection.fetchrow(
            "SELECT actor, payload FROM events WHERE org_id = $1 AND stream_id = $2 AND type = 'UserErased'",
            org_id,
            user_id,
        )
        assert (recorded["actor"], recorded["payload"]) == (DPO.actor, {"reason": REASON})
        assert (
            await connection.fetchval("SELECT count(*) FROM personal_data_keys WHERE user_id = $1", user_id)
            == 0
        )
        assert await tables_quoting(connection, person.needles, events=False) == []
        assert (await verified(connection, org_id)).problem is None
        assert await figures(connection, org_id) == before_figures
    await full_rebuild(pool, services)
    async with pool.acquire() as connection:
        assert await tables_quoting(connection, person.needles, events=False) == []
        assert await figures(connection, org_id) == before_figures
        assert (await verified(connection, org_id)).problem is None
        after_as_of = await as_of_report(connection, org_id, while_member)
        # The replay still runs, and still shows the person's access at that time, by id.
        assert [group["members"] for group in after_as_of["groups"]] == [
            group["members"] for group in before_as_of["groups"]
        ]
        # Waits on the encryption of personal attributes (see the module's note): the payloads as stored, and
        # what a replay of them shows.
        erased_user = next(user for user in after_as_of["users"] if user["id"] == str(user_id))
        assert erased_user["userName"] == ERASED
        assert await payloads_quoting(connection, org_id, person.needles) == []
        assert await tables_quoting(connection, person.needles, events=True) == []


async def test_after_erasure_the_user_name_is_free_again(services: Services, pool: asyncpg.Pool) -> None:
    person = Person()
    org_id = uuid.uuid4()
    user_id = (await services.users.provision(org_id, person.attributes(), OKTA)).user_id
    await services.users.delete(org_id, user_id, OKTA)
    await services.erasure.erase(org_id, user_id, REASON, DPO)
    again = await services.users.provision(org_id, person.attributes(), OKTA)
    assert again.user_id != user_id


async def test_a_user_still_in_the_organization_is_refused_and_nothing_is_erased(
    services: Services, pool: asyncpg.Pool
) -> None:
    person = Person()
    org_id = uuid.uuid4()
    user_id = (await services.users.provision(org_id, person.attributes(), OKTA)).user_id
    with pytest.raises(NotErasable, match="still a member"):
        await services.erasure.erase(org_id, user_id, REASON, DPO)
    assert (await services.users.get(pool, org_id, user_id)).resource["userName"] == person.user_name
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM events WHERE org_id = $1 AND stream_id = $2", org_id, user_id
        )
        == 1
    )


async def test_another_organizations_user_is_not_found(services: Services, pool: asyncpg.Pool) -> None:
    org_id, other_org = uuid.uuid4(), uuid.uuid4()
    user_id = (await services.users.provision(other_org, Person().attributes(), OKTA)).user_id
    await services.users.delete(other_org, user_id, OKTA)
    with pytest.raises(NotFound):
        await services.erasure.erase(org_id, user_id, REASON, DPO)
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", user_id) == 2


async def test_a_removed_user_is_erased_and_their_remaining_groups_revoked_by_the_event(
    services: Services, pool: asyncpg.Pool
) -> None:
    person = Person()
    org_id = uuid.uuid4()
    await services.catalog.create(PROJECT, org_id, "Hermes", ADMIN)
    await services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    user_id = (await services.users.provision(org_id, person.attributes(), OKTA)).user_id
    group_id = await pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", org_id)
    await services.groups.change(
        org_id, group_id, GroupChange(steps=[MembershipStep("add", (str(user_id),))]), OKTA
    )
    await services.users.remove_from_organization(org_id, user_id, ADMIN)  # no runner: groups still held
    await services.erasure.erase(org_id, user_id, REASON, DPO)
    assert await pool.fetchval("SELECT count(*) FROM group_members WHERE org_id = $1", org_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM scim_users WHERE org_id = $1", org_id) == 0
    types = await pool.fetch(
        "SELECT type FROM events WHERE org_id = $1 AND stream_id = $2 ORDER BY version", org_id, user_id
    )
    assert [row["type"] for row in types][-2:] == ["GroupMemberRemoved", "UserErased"]


async def refused_second_post(
    connection: asyncpg.Connection, org: uuid.UUID, token_id: uuid.UUID, user_name: str
) -> None:
    """The connection status's record of a POST /Users refused because `user_name` was taken."""
    await connection.execute(
        "INSERT INTO scim_call_errors (org_id, recorded_at, token_id, method, route, status, detail, "
        "subject_kind, subject) VALUES ($1, now(), $2, 'POST', '/scim/v2/Users', 409, $3, 'user', $4)",
        org,
        token_id,
        f"A user with userName '{user_name}' already exists in this organization.",
        user_name,
    )


async def test_the_erasure_purges_the_tables_outside_the_log_that_quote_the_person(
    services: Services, pool: asyncpg.Pool
) -> None:
    person = Person()
    async with pool.acquire() as connection:
        org = await retention_org(connection)
        token_id = uuid.uuid4()
        await connection.execute(
            "INSERT INTO api_tokens (org_id, token_id, secret_hash, scope) VALUES ($1, $2, $3, 'admin')",
            org,
            token_id,
            uuid.uuid4().bytes * 2,
        )
        user_id = (await services.users.provision(org, person.attributes(), OKTA)).user_id
        await connection.execute(
            "INSERT INTO idempotency_keys (token_id, key, request_hash, status, body) VALUES ($1, 'k', '', 201, $2)",
            token_id,
            f'{{"id": "{user_id}"}}'.encode(),
        )
        await refused_second_post(connection, org, token_id, person.user_name)
        await services.users.delete(org, user_id, OKTA)
        await services.erasure.erase(org, user_id, REASON, DPO)
        assert (
            await connection.fetchval("SELECT count(*) FROM idempotency_keys WHERE token_id = $1", token_id)
            == 0
        )
        assert await connection.fetchval("SELECT count(*) FROM scim_call_errors WHERE org_id = $1", org) == 0


async def retention_org(connection: asyncpg.Connection, days: int | None = None) -> uuid.UUID:
    org_id = uuid.uuid4()
    await connection.execute("INSERT INTO orgs (org_id, name) VALUES ($1, $2)", org_id, f"retention-{org_id}")
    if days is not None:
        await retention.set_policy(connection, org_id, RetentionPolicy(days))
    return org_id


async def test_retention_is_off_by_default_and_set_per_organization(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org_id = await retention_org(connection)
        assert await retention.policy_of(connection, org_id) == RetentionPolicy(None)
        await retention.set_policy(connection, org_id, RetentionPolicy(30))
        assert await retention.policy_of(connection, org_id) == RetentionPolicy(30)
        await retention.set_policy(connection, org_id, RetentionPolicy(None))
        assert await retention.policy_of(connection, org_id) == RetentionPolicy(None)


async def test_the_runners_sweep_erases_users_whose_retention_is_up_recorded_as_the_policys_erasure(
    services: Services, pool: asyncpg.Pool, database_url: str
) -> None:
    async with pool.acquire() as connection:
        org_id = await retention_org(connection, days=2)
        no_policy = await retention_org(connection)
    left = (await services.users.provision(org_id, Person().attributes(), OKTA)).user_id
    member = (await services.users.provision(org_id, Person().attributes(), OKTA)).user_id
    elsewhere = (await services.users.provision(no_policy, Person().attributes(), OKTA)).user_id
    for org, user in ((org_id, left), (no_policy, elsewhere)):
        await services.users.delete(org, user, OKTA)
    # A clock three days ahead: the policy's two days have passed for whoever left by now. The sweep running
    # as the runner runs it, by itself, under its lock.
    ahead = RetentionSweeper(
        pool,
        services.store,
        services.erasure,
        sweep_seconds=0.1,
        clock=lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3),
    )
    task = asyncio.create_task(ahead.run(database_url))
    try:
        deadline = time.monotonic() + 30
        while not await pool.fetchval(
            "SELECT count(*) FROM events WHERE org_id = $1 AND stream_id = $2 AND type = 'UserErased'",
            org_id,
            left,
        ):
            assert time.monotonic() < deadline, "the sweep erased nobody"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    erased = await pool.fetchrow(
        "SELECT actor, payload FROM events WHERE org_id = $1 AND stream_id = $2 AND type = 'UserErased'",
        org_id,
        left,
    )
    assert erased["actor"] == RETENTION_ACTOR
    assert erased["payload"]["reason"] == RetentionPolicy(2).reason()
    # A member, and a user of an organization without a policy, are kept; the sweep erases nobody twice.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = ANY($1::uuid[]) AND type = 'UserErased'",
            [member, elsewhere],
        )
        == 0
    )
    assert await ahead.sweep() == []


async def test_a_sweep_before_the_policys_time_erases_nobody(services: Services, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org_id = await retention_org(connection, days=2)
    user = (await services.users.provision(org_id, Person().attributes(), OKTA)).user_id
    await services.users.delete(org_id, user, OKTA)
    on_time = RetentionSweeper(pool, services.store, services.erasure)
    assert user not in await on_time.sweep()


async def test_the_sweep_erases_a_person_whose_name_happens_to_be_a_word_of_the_policys_reason(
    services: Services, pool: asyncpg.Pool
) -> None:
    # The policy's reason is the service's own text, so it can quote nobody: yet "Ted" is in "deleted", "Ion"
    # in "organization", "Per" and "Son" in "personal", "Day" in "day(s)". Such a person must still be erased.
    async with pool.acquire() as connection:
        org_id = await retention_org(connection, days=2)
    mark = uuid.uuid4().hex[:8]
    profile = {"userName": f"t.day.{mark}@erasure.example", "name": {"givenName": "Ted", "familyName": "Day"}}
    user_id = (await services.users.provision(org_id, profile, OKTA)).user_id
    await services.users.delete(org_id, user_id, OKTA)
    ahead = RetentionSweeper(
        pool,
        services.store,
        services.erasure,
        clock=lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3),
    )
    assert user_id in await ahead.sweep()


async def test_one_user_whose_erasure_fails_holds_back_nobody_else_in_any_organization(
    services: Services, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An erasure may fail for one person (a ciphertext tampered with, conflicts in a row): the sweep skips
    # them and erases everyone else due, in their organization and in the others, and tries them again later.
    async with pool.acquire() as connection:
        first_org = await retention_org(connection, days=2)
        second_org = await retention_org(connection, days=2)
    failing: set[uuid.UUID] = set()
    due: set[uuid.UUID] = set()
    for org_id in (first_org, second_org):
        # In each organization, the one who cannot be erased left first, so the sweep meets them first.
        for chosen in (failing, due):
            user_id = (await services.users.provision(org_id, Person().attributes(), OKTA)).user_id
            await services.users.delete(org_id, user_id, OKTA)
            chosen.add(user_id)
    erase = services.erasure.erase

    async def failing_for_one(org_id: uuid.UUID, user_id: uuid.UUID, *args: Any, **options: Any) -> Any:
        if user_id in failing:
            raise ValueError("the encrypted value at attributes/userName does not belong there")
        return await erase(org_id, user_id, *args, **options)

    monkeypatch.setattr(services.erasure, "erase", failing_for_one)
    ahead = RetentionSweeper(
        pool,
        services.store,
        services.erasure,
        clock=lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3),
    )
    erased = set(await ahead.sweep())
    assert due <= erased
    assert not failing & erased
    monkeypatch.undo()
    assert failing <= set(await ahead.sweep())  # tried again, and erased once they can be


async def test_a_reason_may_use_a_word_that_contains_the_persons_name_but_not_the_name_itself(
    services: Services, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection:
        org_id = await retention_org(connection)
    mark = uuid.uuid4().hex[:8]
    profile = {"userName": f"ted.{mark}@erasure.example", "name": {"givenName": "Ted", "familyName": "Art"}}
    user_id = (await services.users.provision(org_id, profile, OKTA)).user_id
    await services.users.delete(org_id, user_id, OKTA)
    with pytest.raises(NotErasable):
        await services.erasure.erase(org_id, user_id, "asked by Ted on the phone", ADMIN)
    erasure = await services.erasure.erase(org_id, user_id, "GDPR Article 17, user deleted, ticket 42", ADMIN)
    assert erasure.reason == "GDPR Article 17, user deleted, ticket 42"


async def test_the_purge_finds_the_persons_earlier_user_name_and_e_mail_too(
    services: Services, pool: asyncpg.Pool
) -> None:
    # Okta refused a second POST of her first userName; she later married, and Okta renamed her. The refused
    # call quotes the name she had then, which is hers as much as her latest one.
    person = Person()
    async with pool.acquire() as connection:
        org = await retention_org(connection)
        token_id, _ = await tenancy.issue_token(connection, org)
    user_id = (await services.users.provision(org, person.attributes(), OKTA)).user_id
    async with pool.acquire() as connection:
        await refused_second_post(connection, org, token_id, person.user_name)
    renamed = Person()
    await services.users.replace(org, user_id, {**renamed.attributes(), "active": True}, OKTA)
    await services.users.delete(org, user_id, OKTA)
    await services.erasure.erase(org, user_id, REASON, DPO)
    async with pool.acquire() as connection:
        assert await tables_quoting(connection, [*person.needles, *renamed.needles], events=False) == []
