"""The user service's rules without PostgreSQL: the real UserService on the in-memory store (tests/fakes.py).
Given a user's events, when a SCIM or admin command, then the events the log records."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest

from app.services.users import UserService
from domain.errors import DomainError, NotFound, PreconditionFailed
from domain.users import ADMIN_REMOVAL, User
from eventstore.records import Metadata
from eventstore.store import ConcurrencyConflict
from scim.patch_request import PatchRequest, parse_operations
from tests.fakes import FakeEventStore, FakeTransaction

ORG = uuid.uuid4()
OKTA = Metadata(actor="token:okta", request_id="req-1")
ADMIN = Metadata(actor="admin:alice")
PROFILE = {"userName": "ann@example.com", "displayName": "Ann"}


def operations(*bodies: dict[str, Any]) -> Any:
    return parse_operations(msgspec.convert({"Operations": list(bodies)}, PatchRequest))


async def given_user(store: FakeEventStore, service: UserService, **extra: Any) -> uuid.UUID:
    row = await service.provision(ORG, {**PROFILE, **extra}, OKTA)
    return row.user_id


async def given_removed_by_admin(store: FakeEventStore, service: UserService) -> uuid.UUID:
    """A user an org admin removed in the app, then shown inactive (what the reactor decides next)."""
    user_id = await given_user(store, service)
    await service.remove_from_organization(ORG, user_id, ADMIN)
    await service.patch(ORG, user_id, operations({"op": "replace", "value": {"active": False}}), ADMIN)
    return user_id


def then(store: FakeEventStore, user_id: uuid.UUID, since: int) -> list[tuple[str, dict[str, Any]]]:
    """The events of the user's stream from version `since` + 1 on."""
    return [(item.type, item.payload) for item in store.log.streams[(ORG, user_id)][since:]]


def kinds(store: FakeEventStore, user_id: uuid.UUID, since: int) -> list[str]:
    return [kind for kind, _ in then(store, user_id, since)]


@pytest.fixture
def store() -> FakeEventStore:
    return FakeEventStore()


@pytest.fixture
def service(store: FakeEventStore) -> UserService:
    return UserService(store)


async def test_provisioning_is_active_unless_the_client_says_otherwise(
    store: FakeEventStore, service: UserService
) -> None:
    active = await given_user(store, service)
    inactive = await given_user(store, service, active=False)
    assert then(store, active, 0) == [
        (
            User.Provisioned.TOPIC,
            {"originator_topic": "User", "org_id": str(ORG), "attributes": PROFILE, "active": True},
        )
    ]
    assert then(store, inactive, 0)[0][1]["active"] is False
    assert "active" not in then(store, inactive, 0)[0][1]["attributes"], "active is state, not profile"


async def test_a_put_records_only_what_changed(store: FakeEventStore, service: UserService) -> None:
    user_id = await given_user(store, service, title="CTO")
    row = await service.replace(ORG, user_id, {**PROFILE, "title": "CEO", "active": True}, OKTA)
    assert then(store, user_id, 1) == [
        (User.ProfileUpdated.TOPIC, {"changed": {"title": "CEO"}, "removed": []})
    ]
    assert (row.version, row.resource["title"]) == (2, "CEO")


async def test_oktas_deactivation_patch_deactivates_and_keeps_the_user_readable(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_user(store, service)
    row = await service.patch(ORG, user_id, operations({"op": "replace", "value": {"active": False}}), OKTA)
    assert kinds(store, user_id, 1) == [User.Deactivated.TOPIC]
    assert row.resource["active"] is False


async def test_a_patch_that_removes_active_unassigns_it(store: FakeEventStore, service: UserService) -> None:
    user_id = await given_user(store, service)
    row = await service.patch(ORG, user_id, operations({"op": "remove", "path": "active"}), OKTA)
    assert then(store, user_id, 1) == [(User.Deactivated.TOPIC, {"unassigned": True})]
    assert "active" not in row.resource


async def test_a_routine_put_does_not_bring_back_a_user_an_admin_removed(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_removed_by_admin(store, service)
    version = len(store.log.streams[(ORG, user_id)])
    row = await service.replace(ORG, user_id, {**PROFILE, "active": True}, OKTA)
    assert then(store, user_id, version) == []
    assert row.resource["active"] is False


async def test_an_explicit_activation_patch_brings_back_a_user_an_admin_removed(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_removed_by_admin(store, service)
    version = len(store.log.streams[(ORG, user_id)])
    row = await service.patch(ORG, user_id, operations({"op": "replace", "value": {"active": True}}), OKTA)
    assert kinds(store, user_id, version) == [
        User.Reactivated.TOPIC,
        User.JoinedOrganization.TOPIC,
    ]
    assert row.resource["active"] is True


async def test_an_admin_removal_reports_how_the_user_had_already_left(
    store: FakeEventStore, service: UserService
) -> None:
    member = await given_user(store, service)
    assert await service.remove_from_organization(ORG, member, ADMIN) is None
    left = await given_user(store, service, userName="bob@example.com")
    async with store.transaction() as transaction:
        user = (await transaction.load(ORG, [left]))[left]
        user.remove_from_organization("okta_deactivation")
        await transaction.save(ORG, [user], OKTA)
    departure = await service.remove_from_organization(ORG, left, ADMIN)
    assert departure is not None
    assert departure.cause == "okta_deactivation"
    assert then(store, left, 2)[0][1]["cause"] == ADMIN_REMOVAL


async def test_removing_twice_is_refused_and_records_nothing(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_user(store, service)
    await service.remove_from_organization(ORG, user_id, ADMIN)
    with pytest.raises(DomainError, match="already removed"):
        await service.remove_from_organization(ORG, user_id, ADMIN)
    assert len(store.log.streams[(ORG, user_id)]) == 2


async def test_restore_makes_the_user_a_member_and_active_again(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_removed_by_admin(store, service)
    row = await service.restore(ORG, user_id, ADMIN)
    assert kinds(store, user_id, 3) == [
        User.JoinedOrganization.TOPIC,
        User.Reactivated.TOPIC,
    ]
    assert row.resource["active"] is True


async def test_a_stale_if_match_is_refused_and_records_nothing(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_user(store, service)
    with pytest.raises(PreconditionFailed):
        await service.replace(
            ORG, user_id, {**PROFILE, "title": "CEO"}, OKTA, if_match=lambda version: version == 7
        )
    assert len(store.log.streams[(ORG, user_id)]) == 1


async def test_a_deleted_user_and_an_unknown_one_are_not_found(
    store: FakeEventStore, service: UserService
) -> None:
    user_id = await given_user(store, service)
    await service.delete(ORG, user_id, OKTA)
    assert kinds(store, user_id, 1) == [User.Deleted.TOPIC]
    for missing in (user_id, uuid.uuid4()):
        with pytest.raises(NotFound):
            await service.replace(ORG, missing, PROFILE, OKTA)
    with pytest.raises(NotFound):
        await service.replace(uuid.uuid4(), user_id, PROFILE, OKTA)  # another organization's id


class RacedOnce(FakeEventStore):
    """Another writer deactivates the user between the service's load and its save, `rivals` times: the race
    a PATCH or PUT loses when two requests for one user overlap."""

    rivals = 0

    def begin(self, autocommit: bool) -> FakeTransaction:
        return RacedTransaction(self, autocommit)


class RacedTransaction(FakeTransaction):
    def __init__(self, store: RacedOnce, autocommit: bool) -> None:
        super().__init__(store.log, autocommit)
        self._store = store

    async def load(self, org_id: uuid.UUID, stream_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
        loaded = await super().load(org_id, stream_ids)
        if self._store.rivals:
            self._store.rivals -= 1
            rival = FakeTransaction(self._store.log, autocommit=True)
            for user in (await rival.load(org_id, loaded)).values():
                user.set_active(False)
                await rival.save(org_id, [user], ADMIN)
        return loaded


async def test_a_write_that_loses_a_race_is_decided_again_on_the_newer_state() -> None:
    store = RacedOnce()
    service = UserService(store)
    user_id = await given_user(store, service)
    store.rivals = 1
    row = await service.replace(ORG, user_id, {**PROFILE, "title": "CTO"}, OKTA)
    assert kinds(store, user_id, 1) == [User.Deactivated.TOPIC, User.ProfileUpdated.TOPIC]
    assert (row.version, row.resource["active"], row.resource["title"]) == (3, False, "CTO")


async def test_a_write_pinned_by_if_match_that_loses_a_race_is_the_clients_to_resolve() -> None:
    store = RacedOnce()
    service = UserService(store)
    user_id = await given_user(store, service)
    store.rivals = 1
    with pytest.raises(ConcurrencyConflict):
        await service.replace(
            ORG, user_id, {**PROFILE, "title": "CTO"}, OKTA, if_match=lambda version: version == 1
        )
    assert kinds(store, user_id, 1) == [User.Deactivated.TOPIC], "only the rival's write"
