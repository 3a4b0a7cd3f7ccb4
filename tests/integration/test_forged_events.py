"""A forged event grants nothing anywhere: an event a superuser inserted with a transaction id no transaction
was ever given is left out of every read of the log but the tamper check's own. Writers do not fold it into
their decisions, a rebuild does not replay it (even one that did not check for it first), and auditors'
answers do not show it; `audit verify` still names it (tests/integration/test_audit_blind_spots.py).

Each test works on a database of its own: what a superuser forges here must not reach other tests.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator

import pytest

from app.services.catalog import PROJECT, ROLE
from eventstore.records import Metadata
from eventstore.store import ConcurrencyConflict
from projections import audit, audit_history, audit_state, scim_users
from projections.scim import GROUP_TABLES
from tests.integration.forgery import (
    META,
    Ledger,
    forge_next_event,
    forge_user_in_the_future,
    open_ledger,
)

ADMIN = Metadata("admin:forgery-test")
EVER = (
    datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC),
)


@pytest.fixture
async def ledger(server_url: str) -> AsyncIterator[Ledger]:
    async with open_ledger(server_url) as opened:
        yield opened


async def bob_of(ledger: Ledger) -> uuid.UUID:
    bob: uuid.UUID = await ledger.pool.fetchval(
        "SELECT user_id FROM scim_users WHERE org_id = $1 AND user_name = 'bob@seal.test'", ledger.org.org_id
    )
    return bob


async def forged_grant(ledger: Ledger) -> tuple[uuid.UUID, uuid.UUID, list[int]]:
    """A forged user, and a forged membership of bob in the organization's one group; returns bob's id, the
    group's id and the forged events' positions."""
    org_id = ledger.org.org_id
    await ledger.services.catalog.create(PROJECT, org_id, "Apollo", ADMIN)
    await ledger.services.catalog.create(ROLE, org_id, "Admin", ADMIN)
    group_id: uuid.UUID = await ledger.pool.fetchval(
        "SELECT group_id FROM scim_groups WHERE org_id = $1", org_id
    )
    bob = await bob_of(ledger)
    forged = [
        await forge_user_in_the_future(ledger),
        await forge_next_event(ledger, bob, "GroupMemberAdded", {"group_id": str(group_id), "cause": "push"}),
    ]
    return bob, group_id, forged


async def test_a_forged_event_on_a_users_stream_is_not_folded_into_the_next_write(ledger: Ledger) -> None:
    org_id, ann = ledger.org.org_id, ledger.user_id
    await ledger.services.users.replace(org_id, ann, {"userName": "ann@seal.test", "active": False}, META)
    await forge_next_event(ledger, ann, "UserReactivated")
    refused = None
    try:
        # Okta's next profile push: it leaves `active` as it is.
        await ledger.services.users.replace(org_id, ann, {"userName": "ann@seal.test", "title": "CFO"}, META)
    except ConcurrencyConflict as error:
        refused = error
    async with ledger.pool.acquire() as connection:
        row = await scim_users.get(connection, org_id, ann)
    assert row is not None
    assert row.resource["active"] is False, (
        "the forged reactivation was folded into Okta's push, and reached SCIM"
    )
    # The forged event holds the stream's next version, so the write cannot be recorded at all.
    assert refused is not None
    versions = await ledger.pool.fetchval("SELECT max(version) FROM events WHERE stream_id = $1", ann)
    assert versions == 3


async def test_a_rebuild_replays_no_forged_event_even_one_recorded_after_its_check(ledger: Ledger) -> None:
    """The CLI refuses to rebuild while the log holds a forged event, but it checks in a transaction of its
    own: one recorded after the check must still grant nothing. So the rebuild's reads leave it out."""
    bob, group_id, _ = await forged_grant(ledger)
    pool, projection = ledger.pool, ledger.services.projection
    async with pool.acquire() as connection, pool.acquire() as reader:
        await projection.rebuild(connection, reader)
    assert await pool.fetchval("SELECT count(*) FROM scim_users WHERE user_name = 'mallory@seal.test'") == 0
    assert await pool.fetch("SELECT * FROM group_members WHERE group_id = $1", group_id) == []
    assert await pool.fetchval("SELECT version FROM scim_users WHERE user_id = $1", bob) == 1

    # `group repair` replays one organization's groups from the log the same way.
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(f"LOCK TABLE {GROUP_TABLES} IN EXCLUSIVE MODE")
        await projection.rebuild_groups_of(connection, ledger.org.org_id)
    assert await pool.fetch("SELECT * FROM group_members WHERE group_id = $1", group_id) == []


async def test_auditors_answers_leave_out_forged_events(ledger: Ledger) -> None:
    bob, group_id, forged = await forged_grant(ledger)
    org_id, prefix = ledger.org.org_id, ledger.services.settings.group_prefix
    async with ledger.pool.acquire() as connection:
        # As /audit/history and /audit/as-of serve them: paged and streamed, each in transactions of its own.
        history = [
            entry
            async for page in audit_history.history(
                connection, org_id, prefix, audit_history.HistoryFilter(), 100
            )
            for entry in page
        ]
        streamed = await audit_state.state_at(connection, org_id, EVER[1], prefix)
        async with connection.transaction(isolation="repeatable_read"):
            report = (await audit.as_of(connection, org_id, EVER[1], prefix)).to_report()
            grants = await audit.access(connection, org_id, prefix, *EVER)
    assert sorted(user["userName"] for user in streamed.user_rows()) == ["ann@seal.test", "bob@seal.test"]
    assert list(streamed.membership_rows()) == []
    assert history, "the organization's genuine history is there"
    assert not {entry.position for entry in history} & set(forged), "history shows forged events"
    assert sorted(user["userName"] for user in report["users"]) == ["ann@seal.test", "bob@seal.test"]
    assert report["memberships"] == []
    assert [(grant.user_id, grant.group_id) for grant in grants] == []
    assert str(bob) not in next(
        group["members"] for group in report["groups"] if group["id"] == str(group_id)
    )
