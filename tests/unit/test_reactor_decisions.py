"""Given events, when a membership reactor handles them, then these events: the reactors' decisions without
PostgreSQL, on the in-memory store (tests/fakes.py). tests/e2e/test_reactors.py covers them on the log."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec

from domain.users import ADMIN_REMOVAL, User
from eventstore.records import Metadata, RecordedEvent
from reactors.membership import DeactivationRemovesFromOrganization, RemovalDeactivates, UserReactor
from tests.fakes import FakeEventStore

ORG = uuid.uuid4()
OKTA = Metadata(actor="token:okta", request_id="req-okta")
ADMIN = Metadata(actor="admin:alice", request_id="req-admin")


async def given(
    store: FakeEventStore, command: Callable[[User], None], metadata: Metadata
) -> tuple[User, list[RecordedEvent]]:
    """A member of two groups, provisioned and changed by `command`; the events `command` recorded."""
    user = User(org_id=str(ORG), attributes={"userName": f"{uuid.uuid4().hex}@example.com"}, active=True)
    user.join_group("group-b", "push")
    user.join_group("group-a", "push")
    async with store.transaction() as transaction:
        await transaction.save(ORG, [user], OKTA)
        loaded = (await transaction.load(ORG, [user.id]))[user.id]
        command(loaded)
        recorded = await transaction.save(ORG, [loaded], metadata)
    return loaded, recorded


async def when(
    store: FakeEventStore, reactor: UserReactor, events: list[RecordedEvent]
) -> list[tuple[str, str, str | None, dict[str, object]]]:
    """The reactor handles `events`; then what it appended, as (type, actor, request id, payload)."""
    before = len(store.log.events)
    async with store.transaction() as transaction:
        await reactor.handle(transaction, events)
    return [(item.type, item.actor, item.request_id, item.payload) for item in store.log.events[before:]]


async def test_okta_deactivation_removes_the_user_from_the_organization_and_every_group() -> None:
    store = FakeEventStore()
    _, deactivated = await given(store, lambda user: user.set_active(False), OKTA)
    appended = await when(store, DeactivationRemovesFromOrganization(), deactivated)
    actor = "reactor:reactor.deactivation_removes_from_organization"
    assert [(kind, who, request) for kind, who, request, _ in appended] == [
        (User.RemovedFromOrganization.TOPIC, actor, "req-okta"),
        (User.LeftGroup.TOPIC, actor, "req-okta"),
        (User.LeftGroup.TOPIC, actor, "req-okta"),
    ], "each decision carries the request id of what caused it"
    assert appended[0][3]["cause"] == "okta_deactivation"
    assert [payload["group_id"] for *_, payload in appended[1:]] == ["group-a", "group-b"]
    assert {payload["cause"] for *_, payload in appended[1:]} == {"reactor"}


async def test_okta_delete_removes_with_the_cause_okta_delete() -> None:
    store = FakeEventStore()
    _, deleted = await given(store, User.delete, OKTA)
    appended = await when(store, DeactivationRemovesFromOrganization(), deleted)
    assert appended[0][0] == User.RemovedFromOrganization.TOPIC
    assert appended[0][3]["cause"] == "okta_delete"


async def test_a_deactivation_okta_already_reversed_removes_nobody() -> None:
    store = FakeEventStore()
    user, deactivated = await given(store, lambda user: user.set_active(False), OKTA)
    async with store.transaction() as transaction:
        loaded = (await transaction.load(ORG, [user.id]))[user.id]
        loaded.set_active(True)
        await transaction.save(ORG, [loaded], OKTA)
    assert await when(store, DeactivationRemovesFromOrganization(), deactivated) == []


async def test_a_deactivation_by_the_other_reactor_is_not_the_identity_providers() -> None:
    store = FakeEventStore()
    _, deactivated = await given(
        store, lambda user: user.set_active(False), Metadata("reactor:reactor.removal_deactivates")
    )
    assert await when(store, DeactivationRemovesFromOrganization(), deactivated) == []


async def test_replaying_a_deactivation_decides_nothing_more() -> None:
    store = FakeEventStore()
    _, deactivated = await given(store, lambda user: user.set_active(False), OKTA)
    assert await when(store, DeactivationRemovesFromOrganization(), deactivated)
    assert await when(store, DeactivationRemovesFromOrganization(), deactivated) == []


async def test_an_admin_removal_revokes_every_group_and_deactivates() -> None:
    store = FakeEventStore()
    _, removed = await given(store, lambda user: user.remove_from_organization(ADMIN_REMOVAL), ADMIN)
    appended = await when(store, RemovalDeactivates(), removed)
    actor = "reactor:reactor.removal_deactivates"
    assert [(kind, who, request) for kind, who, request, _ in appended] == [
        (User.LeftGroup.TOPIC, actor, "req-admin"),
        (User.LeftGroup.TOPIC, actor, "req-admin"),
        (User.Deactivated.TOPIC, actor, "req-admin"),
    ]


async def test_a_removal_by_the_identity_provider_is_left_to_the_other_reactor() -> None:
    store = FakeEventStore()
    _, removed = await given(store, lambda user: user.remove_from_organization("okta_deactivation"), OKTA)
    assert await when(store, RemovalDeactivates(), removed) == []


async def test_a_user_restored_since_the_admin_removal_keeps_access() -> None:
    store = FakeEventStore()
    user, removed = await given(store, lambda user: user.remove_from_organization(ADMIN_REMOVAL), ADMIN)
    async with store.transaction() as transaction:
        loaded = (await transaction.load(ORG, [user.id]))[user.id]
        loaded.restore()
        await transaction.save(ORG, [loaded], ADMIN)
    assert await when(store, RemovalDeactivates(), removed) == []


async def test_events_of_users_the_store_does_not_hold_are_skipped() -> None:
    store = FakeEventStore()
    _, deactivated = await given(store, lambda user: user.set_active(False), OKTA)
    stranger = msgspec.structs.replace(deactivated[0], stream_id=uuid.uuid4())
    assert await when(store, DeactivationRemovesFromOrganization(), [stranger]) == []
