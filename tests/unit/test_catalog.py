"""Given events, when a command, then events: projects, roles, groups and membership, without a database."""

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from domain.catalog import EVENT_TYPE_NAMES, Group, Project, Role, group_id_for
from domain.errors import ArchivedError, DomainError, InactiveMember
from domain.users import User


def then(aggregate: Aggregate) -> list[tuple[str, dict[str, Any]]]:
    skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    return [
        (type(event).TOPIC, {key: value for key, value in vars(event).items() if key not in skip})
        for event in aggregate.collect_events()
    ]


@pytest.mark.parametrize("kind", [Project, Role])
def test_projects_and_roles_are_created_renamed_and_archived(kind: type[Project] | type[Role]) -> None:
    entity = kind(org_id="org", name="Apollo")
    entity.rename("Apollo")  # the same name records nothing
    entity.rename("  Apollo   Two ")
    entity.archive()
    entity.archive()
    prefix = kind.__name__
    assert then(entity) == [
        (f"{prefix}Created", {"org_id": "org", "name": "Apollo"}),
        (f"{prefix}Renamed", {"name": "Apollo Two"}),
        (f"{prefix}Archived", {}),
    ]
    with pytest.raises(ArchivedError):
        entity.rename("Later")


# "\ufdfa" is one character that NFKC spells out in 18 (33 bytes): 200 of them would overflow a group name's index.
@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "\ufdfa" * 200])
def test_names_must_be_present_and_reasonable(name: str) -> None:
    project = Project(org_id="org", name="ok")
    with pytest.raises(DomainError):
        project.rename(name)


def test_a_pairs_group_id_is_derived_from_the_pair() -> None:
    project_id, role_id = uuid.uuid4(), uuid.uuid4()
    group = Group(org_id="org", project_id=str(project_id), role_id=str(role_id))
    assert group.id == group_id_for(project_id, role_id)
    assert group_id_for(project_id, role_id) != group_id_for(role_id, project_id)


def test_a_group_is_linked_once_and_unlinked_with_a_cause() -> None:
    group = Group(org_id="org", project_id=str(uuid.uuid4()), role_id=str(uuid.uuid4()))
    group.collect_events()
    group.link()
    group.link()
    group.unlink("unlink")
    group.unlink("unlink")
    group.link()
    assert then(group) == [("GroupLinked", {}), ("GroupUnlinked", {"cause": "unlink"}), ("GroupLinked", {})]


def test_membership_is_recorded_on_the_user_once_each_way() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.collect_events()
    user.join_group("g1", "push")
    user.join_group("g1", "push")
    user.leave_group("g2", "push")  # not a member: nothing
    user.leave_group("g1", "archive")
    assert then(user) == [
        ("GroupMemberAdded", {"group_id": "g1", "cause": "push"}),
        ("GroupMemberRemoved", {"group_id": "g1", "cause": "archive"}),
    ]
    assert user.groups == set()


def test_only_active_users_may_join_a_group() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=False)
    with pytest.raises(InactiveMember):
        user.join_group("g1", "push")
    user.set_active(True)
    user.join_group("g1", "push")
    user.delete()
    with pytest.raises(InactiveMember):
        user.join_group("g2", "push")


def test_provisioning_makes_a_member_and_removal_is_recorded_once_with_its_cause() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    assert user.member
    user.collect_events()
    user.join_group("g1", "push")
    user.join_group("g2", "push")
    user.remove_from_organization("admin")
    user.remove_from_organization("okta_deactivation")
    user.revoke_all_groups("reactor")
    user.set_active(False)
    assert then(user) == [
        ("GroupMemberAdded", {"group_id": "g1", "cause": "push"}),
        ("GroupMemberAdded", {"group_id": "g2", "cause": "push"}),
        ("UserRemovedFromOrganization", {"cause": "admin"}),
        ("GroupMemberRemoved", {"group_id": "g1", "cause": "reactor"}),
        ("GroupMemberRemoved", {"group_id": "g2", "cause": "reactor"}),
        ("UserDeactivated", {"unassigned": False}),
    ]


def test_reactivation_brings_a_removed_user_back_without_their_groups() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.join_group("g1", "push")
    user.set_active(False)
    user.remove_from_organization("okta_deactivation")
    user.revoke_all_groups("reactor")
    user.collect_events()
    user.set_active(True)
    assert then(user) == [("UserReactivated", {}), ("UserJoinedOrganization", {"cause": "okta_reactivation"})]
    assert (user.member, user.groups) == (True, set())


def test_the_partial_index_of_catalog_events_lists_every_catalog_event_type() -> None:
    """Migration 0015's index must hold exactly the events a history page replays, or pages scan the log."""
    migration = next((Path(__file__).parents[2] / "migrations").glob("0015_*.sql")).read_text()
    listed = re.search(r"WHERE type IN \(([^)]*)\)", migration)
    assert listed is not None
    assert sorted(re.findall(r"'(\w+)'", listed[1])) == sorted(EVENT_TYPE_NAMES)


def admin_removed() -> User:
    """A user an org admin removed in the app, after the reactor revoked their access and deactivated them."""
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.join_group("g1", "push")
    user.remove_from_organization("admin")
    user.revoke_all_groups("reactor")
    user.set_active(False)
    user.collect_events()
    return user


def test_a_profile_push_carrying_active_true_leaves_an_admins_removal_in_place() -> None:
    user = admin_removed()
    user.replace({"userName": "ann", "title": "CFO"}, active=True)  # Okta's PUT: always `active: true`
    assert [name for name, _ in then(user)] == ["UserProfileUpdated"]
    assert (user.active, user.member) == (False, False)


def test_an_explicit_activation_or_the_admins_restore_brings_the_user_back() -> None:
    activated = admin_removed()
    activated.replace({"userName": "ann"}, active=True, patch=True)  # Okta's PATCH active true
    assert then(activated) == [
        ("UserReactivated", {}),
        ("UserJoinedOrganization", {"cause": "okta_reactivation"}),
    ]
    restored = admin_removed()
    restored.restore()
    assert then(restored) == [("UserJoinedOrganization", {"cause": "admin_restore"}), ("UserReactivated", {})]
    assert (restored.active, restored.member, restored.removed_by_admin) == (True, True, False)
    with pytest.raises(DomainError, match="was not removed in the app"):
        restored.restore()


def test_a_patch_that_changes_the_profile_too_updates_it_and_leaves_an_admins_removal_in_place() -> None:
    """Entra's routine update: every attribute that differs from what it read, `active: "True"` among them."""
    user = admin_removed()
    user.replace({"userName": "ann", "displayName": "Ann Lee"}, active=True, patch=True)
    assert then(user) == [("UserProfileUpdated", {"changed": {"displayName": "Ann Lee"}, "removed": []})]
    assert (user.active, user.member, user.removed_by_admin) == (False, False, True)


def test_a_patch_to_active_true_of_a_user_still_active_brings_back_nobody_an_admin_removed() -> None:
    """Before the reactor has deactivated them, the identity provider sees them active: no reactivation."""
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.remove_from_organization("admin")
    user.collect_events()
    user.replace({"userName": "ann"}, active=True, patch=True)
    assert then(user) == []
    assert (user.member, user.removed_by_admin) == (False, True)


def okta_removed() -> User:
    """A user who left the organization after Okta deactivated them, as the reactor decided."""
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.set_active(False)
    user.remove_from_organization("okta_deactivation")
    user.collect_events()
    return user


def test_an_admins_removal_of_a_user_who_had_left_is_recorded_and_holds_against_a_profile_push() -> None:
    user = okta_removed()
    left = user.departure
    assert left is not None
    assert left.cause == "okta_deactivation"
    user.remove_from_organization("admin")
    assert then(user) == [("UserRemovedFromOrganization", {"cause": "admin"})]
    assert user.removed_by_admin
    user.replace({"userName": "ann"}, active=True)  # Okta's PUT
    assert then(user) == []
    assert (user.active, user.member) == (False, False)
    user.replace({"userName": "ann"}, active=True, patch=True)  # Okta's reactivation
    assert [name for name, _ in then(user)] == ["UserReactivated", "UserJoinedOrganization"]


def test_a_user_who_merely_left_is_brought_back_by_any_activation() -> None:
    """What the admin's removal of such a user changes: without it, Okta's next PUT brings them back."""
    user = okta_removed()
    user.replace({"userName": "ann"}, active=True)
    assert [name for name, _ in then(user)] == ["UserReactivated", "UserJoinedOrganization"]


def test_removing_a_user_an_admin_already_removed_is_refused_and_records_nothing() -> None:
    user = admin_removed()
    with pytest.raises(DomainError, match="'ann' was already removed from the organization in the app on"):
        user.remove_from_organization("admin")
    assert then(user) == []


def test_a_user_an_admin_removed_may_not_join_a_group_even_before_the_reactor_deactivated_them() -> None:
    user = User(org_id="org", attributes={"userName": "ann"}, active=True)
    user.remove_from_organization("admin")
    assert user.active
    with pytest.raises(InactiveMember, match="was removed from the organization in the app on"):
        user.join_group("g1", "push")


def test_a_profile_push_assigns_active_again_as_false_for_a_user_an_admin_removed() -> None:
    """`active` unassigned, then Okta's PUT with `active: true`: the removal holds, and the user shows
    `active: false` again rather than no `active` at all."""
    user = admin_removed()
    user.unassign_active()
    user.collect_events()
    user.replace({"userName": "ann"}, active=True)
    assert then(user) == [("UserDeactivated", {"unassigned": False})]
    assert (user.active, user.active_unassigned, user.member) == (False, False, False)
