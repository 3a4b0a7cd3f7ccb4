"""The contract of the store's port, run on PostgreSQL and on the in-memory fake (tests/fakes.py) alike, so
that the fast tests of services and reactors, which run on the fake, cannot drift from what the real store
does: what `load` returns, what `save` records and returns, and how a stale version fails."""

from __future__ import annotations

import uuid

import pytest

from domain.users import User
from eventstore.records import Metadata
from eventstore.store import ConcurrencyConflict, EventStore
from tests.fakes import FakeEventStore

OKTA = Metadata(actor="token:okta", request_id="req-1")


@pytest.fixture(params=["postgresql", "in memory"])
def any_store(request: pytest.FixtureRequest, store: EventStore) -> EventStore:
    return store if request.param == "postgresql" else FakeEventStore()


def new_user(org_id: uuid.UUID, user_name: str = "ann") -> User:
    return User(org_id=str(org_id), attributes={"userName": user_name}, active=True)


async def test_load_leaves_out_unknown_streams_and_other_organizations_streams(any_store: EventStore) -> None:
    org_id = uuid.uuid4()
    user = new_user(org_id)
    async with any_store.transaction() as transaction:
        await transaction.save(org_id, [user], OKTA)
    async with any_store.autocommit() as transaction:
        assert await transaction.load(org_id, [uuid.uuid4()]) == {}
        assert await transaction.load(uuid.uuid4(), [user.id]) == {}
        assert list(await transaction.load(org_id, [user.id, uuid.uuid4()])) == [user.id]


async def test_save_returns_the_events_as_the_log_records_them_and_load_replays_the_aggregate(
    any_store: EventStore,
) -> None:
    org_id = uuid.uuid4()
    user = new_user(org_id)
    user.replace({"userName": "ann", "title": "CTO"}, active=False)
    async with any_store.autocommit() as transaction:
        recorded = await transaction.save(org_id, [user], OKTA)
        assert transaction.appended
    assert [(item.version, item.type, item.actor, item.request_id) for item in recorded] == [
        (1, User.Provisioned.TOPIC, "token:okta", "req-1"),
        (2, User.ProfileUpdated.TOPIC, "token:okta", "req-1"),
        (3, User.Deactivated.TOPIC, "token:okta", "req-1"),
    ]
    assert [item.position for item in recorded] == sorted(item.position for item in recorded)
    assert recorded[1].payload == {"changed": {"title": "CTO"}, "removed": []}
    assert await any_store.read_stream(org_id, user.id) == recorded
    async with any_store.autocommit() as transaction:
        loaded = (await transaction.load(org_id, [user.id]))[user.id]
    assert loaded is not user, "a load replays a fresh aggregate"
    assert isinstance(loaded, User)
    assert (loaded.attributes, loaded.active, loaded.version, loaded.pending_events) == (
        {"userName": "ann", "title": "CTO"},
        False,
        3,
        [],
    )


async def test_save_gives_each_event_its_own_cause_when_told(any_store: EventStore) -> None:
    org_id = uuid.uuid4()
    user = new_user(org_id)
    user.set_active(False)
    causes = {user.id: [Metadata("reactor:a", "req-a"), Metadata("reactor:b", "req-b")]}
    async with any_store.transaction() as transaction:
        recorded = await transaction.save(org_id, [user], OKTA, causes)
    assert [(item.actor, item.request_id) for item in recorded] == [
        ("reactor:a", "req-a"),
        ("reactor:b", "req-b"),
    ]


async def test_saving_aggregates_without_pending_events_appends_nothing(any_store: EventStore) -> None:
    org_id = uuid.uuid4()
    user = new_user(org_id)
    async with any_store.autocommit() as transaction:
        await transaction.save(org_id, [user], OKTA)
    async with any_store.autocommit() as transaction:
        loaded = (await transaction.load(org_id, [user.id]))[user.id]
        assert await transaction.save(org_id, [loaded], OKTA) == []
        assert not transaction.appended


async def test_a_stale_version_fails_the_whole_save_in_a_transaction(any_store: EventStore) -> None:
    org_id = uuid.uuid4()
    ann, bob = new_user(org_id, "ann"), new_user(org_id, "bob")
    async with any_store.transaction() as transaction:
        await transaction.save(org_id, [ann, bob], OKTA)

    async def save_on_stale_state() -> None:
        async with any_store.transaction() as transaction:
            loaded = await transaction.load(org_id, [ann.id, bob.id])
            async with any_store.autocommit() as other:  # another writer gets to ann first
                first = (await other.load(org_id, [ann.id]))[ann.id]
                first.set_active(False)
                await other.save(org_id, [first], OKTA)
            loaded[bob.id].set_active(False)
            loaded[ann.id].replace({"userName": "ann", "title": "CTO"}, active=None)
            await transaction.save(org_id, [loaded[bob.id], loaded[ann.id]], OKTA)

    with pytest.raises(ConcurrencyConflict) as conflict:
        await save_on_stale_state()
    assert (conflict.value.stream_id, conflict.value.expected_version) == (ann.id, 1)
    assert [item.version for item in await any_store.read_stream(org_id, ann.id)] == [1, 2]
    assert [item.version for item in await any_store.read_stream(org_id, bob.id)] == [1], "bob's events too"


async def test_a_transaction_reads_its_own_appends_and_a_failed_one_writes_nothing(
    any_store: EventStore,
) -> None:
    org_id = uuid.uuid4()
    user = new_user(org_id)

    async def fail_after_saving() -> None:
        async with any_store.transaction() as transaction:
            await transaction.save(org_id, [user], OKTA)
            assert (await transaction.load(org_id, [user.id]))[user.id].version == 1
            raise RuntimeError("the command failed after saving")

    with pytest.raises(RuntimeError):
        await fail_after_saving()
    assert await any_store.read_stream(org_id, user.id) == []


async def test_in_autocommit_a_stale_version_fails_the_whole_save_too(
    any_store: EventStore,
) -> None:
    """With no transaction open, a save of several streams is made whole by a transaction of its own: the
    append statement filters a stale stream's rows rather than refusing them, so on its own it would commit
    the streams still at their version before the stale one is found."""
    org_id = uuid.uuid4()
    ann, bob = new_user(org_id, "ann"), new_user(org_id, "bob")
    async with any_store.transaction() as transaction:
        await transaction.save(org_id, [ann, bob], OKTA)
    async with any_store.autocommit() as transaction:
        loaded = await transaction.load(org_id, [ann.id, bob.id])
        async with any_store.autocommit() as other:
            first = (await other.load(org_id, [ann.id]))[ann.id]
            first.set_active(False)
            await other.save(org_id, [first], OKTA)
        loaded[ann.id].set_active(False)
        loaded[bob.id].set_active(False)
        with pytest.raises(ConcurrencyConflict):
            await transaction.save(org_id, [loaded[bob.id], loaded[ann.id]], OKTA)
    assert [item.version for item in await any_store.read_stream(org_id, bob.id)] == [1], "bob's events too"
