"""Given events, when an erasure, then events: who may be erased, and what the erasure records."""

from typing import Any

import pytest

from domain.errors import NotErasable, UserDeletedError
from domain.personal_data import personal_values
from domain.users import ADMIN_REMOVAL, User


def given_member(**attributes: Any) -> User:
    user = User(
        org_id="org",
        attributes={
            "userName": "zora.quill@example.test",
            "name": {"givenName": "Zora", "familyName": "Quillfeather"},
            "emails": [{"value": "zq@home.example.test", "primary": True}],
            **attributes,
        },
        active=True,
    )
    user.collect_events()
    return user


def recorded(user: User) -> list[str]:
    return [type(event).TOPIC for event in user.collect_events()]


def test_a_member_is_refused_with_what_to_do_first() -> None:
    user = given_member()
    with pytest.raises(NotErasable, match=r"still a member.*remove them from the organization"):
        user.erase("ticket 42")
    assert recorded(user) == []


def test_a_deleted_user_is_erased_and_the_event_holds_the_reason_alone() -> None:
    user = given_member()
    user.delete()
    user.collect_events()
    user.erase("  GDPR request,   ticket 42 ")
    events = user.collect_events()
    assert [type(event).TOPIC for event in events] == ["UserErased"]
    fields = {key for key in vars(events[0]) if not key.startswith("originator") and key != "timestamp"}
    assert fields == {"reason"}
    assert events[0].reason == "GDPR request, ticket 42"  # type: ignore[attr-defined]
    assert user.erased
    assert user.deleted


def test_a_removed_user_is_erased_after_their_remaining_groups_are_revoked() -> None:
    user = given_member()
    user.join_group("g1", "push")
    user.remove_from_organization(ADMIN_REMOVAL)
    user.collect_events()
    user.erase("ticket 42")
    assert recorded(user) == ["GroupMemberRemoved", "UserErased"]
    assert user.groups == set()


def test_an_erased_user_accepts_nothing_more_and_is_not_erased_twice() -> None:
    user = given_member()
    user.delete()
    user.erase("ticket 42")
    user.collect_events()
    with pytest.raises(NotErasable, match="already erased"):
        user.erase("again")
    with pytest.raises(UserDeletedError, match="erased"):
        user.replace({"userName": "x"}, active=True)
    user.remove_from_organization("okta_delete")  # a reactor late on the deletion records nothing
    assert recorded(user) == []


@pytest.mark.parametrize("reason", ["", "   ", "asked by ZORA.QUILL@example.test", "Quillfeather asked"])
def test_a_missing_reason_or_one_that_repeats_the_persons_data_is_refused(reason: str) -> None:
    user = given_member()
    user.delete()
    user.collect_events()
    with pytest.raises(NotErasable):
        user.erase(reason)
    assert recorded(user) == []


def test_left_on_is_the_earlier_of_deletion_and_removal() -> None:
    user = given_member()
    assert user.left_on is None
    user.remove_from_organization(ADMIN_REMOVAL)
    removed = user.left_on
    user.delete()
    assert removed is not None
    assert user.left_on == removed


def test_personal_values_are_the_identifying_strings_longest_first() -> None:
    values = personal_values(given_member(displayName="Zora Q", title="CTO").attributes)
    assert values == sorted(values, key=lambda value: (-len(value), value))
    assert set(values) == {
        "zora.quill@example.test",
        "zq@home.example.test",
        "Quillfeather",
        "Zora Q",
        "Zora",
    }
