"""Given events, when a command, then events: the User aggregate without a database."""

from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from domain.errors import UserDeletedError
from domain.users import User


def given_user(active: bool = True, **attributes: Any) -> User:
    user = User(org_id="org", attributes={"userName": "bob", **attributes}, active=active)
    user.collect_events()
    return user


def then(user: User) -> list[tuple[str, dict[str, Any]]]:
    skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    return [
        (type(event).TOPIC, {key: value for key, value in vars(event).items() if key not in skip})
        for event in user.collect_events()
    ]


def test_provisioning_records_user_provisioned_with_the_profile() -> None:
    user = User(org_id="org", attributes={"userName": "bob", "title": "CTO"}, active=True)
    assert then(user) == [
        (
            "UserProvisioned",
            {"org_id": "org", "attributes": {"userName": "bob", "title": "CTO"}, "active": True},
        )
    ]
    assert user.version == 1


def test_replace_records_only_what_changed_and_what_was_removed() -> None:
    user = given_user(title="CTO", nickName="B")
    user.replace({"userName": "bob", "title": "CEO", "locale": "en"}, active=None)
    assert then(user) == [
        ("UserProfileUpdated", {"changed": {"title": "CEO", "locale": "en"}, "removed": ["nickName"]})
    ]
    assert user.attributes == {"userName": "bob", "title": "CEO", "locale": "en"}


def test_replace_with_the_same_profile_records_nothing() -> None:
    user = given_user(title="CTO")
    user.replace({"userName": "bob", "title": "CTO"}, active=True)
    assert then(user) == []


def test_deactivation_and_reactivation_are_recorded_once_each() -> None:
    user = given_user()
    user.set_active(False)
    user.set_active(False)
    user.replace({"userName": "bob"}, active=True)
    assert [name for name, _ in then(user)] == ["UserDeactivated", "UserReactivated"]
    assert user.active


def test_a_deleted_user_accepts_no_further_commands() -> None:
    user = given_user()
    user.delete()
    assert [name for name, _ in then(user)] == ["UserDeleted"]
    for command in (
        user.delete,
        lambda: user.set_active(False),
        lambda: user.replace({"userName": "x"}, None),
    ):
        with pytest.raises(UserDeletedError):
            command()


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    user = User(org_id="org", attributes={"userName": "bob"}, active=True)
    user.replace({"userName": "robert", "title": "x"}, active=False)
    replayed: Aggregate | None = None
    for event in user.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, User)
    assert (replayed.id, replayed.version, replayed.attributes, replayed.active) == (
        user.id,
        user.version,
        user.attributes,
        user.active,
    )


def test_event_type_names_are_explicit_and_past_tense() -> None:
    assert [
        event.TOPIC
        for event in (User.Provisioned, User.ProfileUpdated, User.Deactivated, User.Reactivated, User.Deleted)
    ] == ["UserProvisioned", "UserProfileUpdated", "UserDeactivated", "UserReactivated", "UserDeleted"]
