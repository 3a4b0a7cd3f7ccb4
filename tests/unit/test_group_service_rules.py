"""The group service's membership rules without PostgreSQL. Where they live apart from its SQL: `_targets`
resolves a request's steps into users to add and remove (from the steps alone, unless a step replaces the
membership or filters it), `_decide` refuses or applies them on aggregates built from events. The rest of
GroupService reads the SCIM projection and stays in the integration and end-to-end tiers."""

from __future__ import annotations

import uuid

import pytest

from app.services.groups import GroupService, _decide
from domain.catalog import Group
from domain.errors import InvalidMember
from domain.users import User
from scim.group_patch import MembershipStep
from scim.patch import Budget
from tests.fakes import FakeEventStore, FakeTransaction

ORG = uuid.uuid4()
GROUP_ID = uuid.uuid4()


def member(user_name: str, *, active: bool = True) -> User:
    user = User(
        org_id=str(ORG), attributes={"userName": user_name, "displayName": user_name.title()}, active=active
    )
    user.collect_events()
    return user


def given_group(*, linked: bool = False) -> Group:
    group = Group(org_id=str(ORG), project_id=str(uuid.uuid4()), role_id=str(uuid.uuid4()))
    if linked:
        group.link()
    group.collect_events()
    return group


def then(*aggregates: User | Group) -> list[tuple[str, str, object]]:
    """Every pending event, as (aggregate, type, cause if any)."""
    return [
        (getattr(aggregate, "user_name", "group"), type(event).TOPIC, getattr(event, "cause", None))
        for aggregate in aggregates
        for event in aggregate.collect_events()
    ]


async def targets(
    *steps: MembershipStep, limit: int = 100
) -> tuple[list[uuid.UUID], list[uuid.UUID], list[str]]:
    async with FakeEventStore().transaction() as transaction:
        assert isinstance(transaction, FakeTransaction)
        return await GroupService._targets(transaction, ORG, GROUP_ID, steps, Budget(limit))


async def test_steps_apply_in_order_and_the_last_word_on_a_member_wins() -> None:
    ann, bob, eve = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    adds, removes, malformed = await targets(
        MembershipStep("add", (str(ann), str(bob))),
        MembershipStep("remove", (str(bob), str(eve))),
        MembershipStep("add", (str(eve),)),
    )
    assert (adds, removes, malformed) == ([ann, eve], [bob], [])


async def test_members_that_are_no_id_are_refused_to_add_and_ignored_to_remove() -> None:
    ann = uuid.uuid4()
    adds, removes, malformed = await targets(
        MembershipStep("add", ("not-an-id", str(ann))), MembershipStep("remove", ("neither",))
    )
    assert (adds, removes, malformed) == ([ann], [], ["not-an-id"])


def test_adding_and_removing_records_removals_first_then_additions_in_request_order_then_the_link() -> None:
    ann, bob, eve = member("ann"), member("bob"), member("eve")
    group = given_group()
    eve.join_group(str(group.id), "push")
    eve.collect_events()
    users = {user.id: user for user in (ann, bob, eve)}
    changed = _decide(users, [bob.id, ann.id], [eve.id], group, "push", [], {})
    assert [user.user_name for user in changed] == ["eve", "bob", "ann"]
    assert then(group, *changed) == [
        ("group", Group.Linked.TOPIC, None),
        ("eve", User.LeftGroup.TOPIC, "push"),
        ("bob", User.JoinedGroup.TOPIC, "push"),
        ("ann", User.JoinedGroup.TOPIC, "push"),
    ]


def test_one_member_that_may_not_be_added_refuses_the_whole_request_naming_every_refusal() -> None:
    ann, gone = member("ann"), member("gone", active=False)
    stranger = uuid.uuid4()
    group = given_group()
    users = {ann.id: ann, gone.id: gone}
    with pytest.raises(InvalidMember) as refused:
        _decide(users, [ann.id, gone.id, stranger], [], group, "push", ["x"], {str(stranger): "Stranger"})
    message = str(refused.value)
    assert "3 members" in message, "ann may be added: only the three others are named"
    assert "'x' is not a user of this organization" in message
    assert "'gone' (Gone) is deactivated in the identity provider" in message
    assert f"'{stranger}' (sent as 'Stranger') is not a user" in message
    assert then(group, ann, gone) == [], "nothing is decided when anything is refused"


def test_removing_someone_who_is_no_user_or_no_member_records_only_the_link() -> None:
    ann = member("ann")
    group = given_group(linked=True)
    changed = _decide({ann.id: ann}, [], [ann.id, uuid.uuid4()], group, "push", [], {})
    assert then(group, *changed) == []
