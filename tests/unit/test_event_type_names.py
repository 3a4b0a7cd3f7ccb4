"""Event types are referred to by class: their stored names are fixed, and no reader spells one out."""

from __future__ import annotations

import ast
import pathlib

from eventsourcing.domain import Aggregate

from domain import catalog, org_schemas, users
from domain.catalog import ENTITY_KIND_OF_EVENT, Group, Project, Role
from domain.org_schemas import OrgSchema
from domain.users import MEMBERSHIP_EVENT_TYPE_NAMES, User

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENT_TYPES: tuple[type[Aggregate.Event], ...] = (
    *users.EVENT_TYPES,
    *catalog.EVENT_TYPES,
    *org_schemas.EVENT_TYPES,
)
TYPE_NAMES = {event_type.TOPIC for event_type in EVENT_TYPES}  # type: ignore[attr-defined]


def test_the_stored_type_names_stay_what_the_log_holds_whatever_the_classes_are_called() -> None:
    assert {event_type.__qualname__: event_type.TOPIC for event_type in EVENT_TYPES} == {  # type: ignore[attr-defined]
        "User.Provisioned": "UserProvisioned",
        "User.ProfileUpdated": "UserProfileUpdated",
        "User.Deactivated": "UserDeactivated",
        "User.Reactivated": "UserReactivated",
        "User.Deleted": "UserDeleted",
        "User.JoinedGroup": "GroupMemberAdded",
        "User.LeftGroup": "GroupMemberRemoved",
        "User.RemovedFromOrganization": "UserRemovedFromOrganization",
        "User.JoinedOrganization": "UserJoinedOrganization",
        "User.Erased": "UserErased",
        "Project.Created": "ProjectCreated",
        "Project.Renamed": "ProjectRenamed",
        "Project.Archived": "ProjectArchived",
        "Role.Created": "RoleCreated",
        "Role.Renamed": "RoleRenamed",
        "Role.Archived": "RoleArchived",
        "Group.Created": "GroupCreated",
        "Group.Linked": "GroupLinked",
        "Group.Unlinked": "GroupUnlinked",
        "OrgSchema.Declared": "OrgSchemaDeclared",
        "OrgSchema.Redeclared": "OrgSchemaRedeclared",
    }


def spelled_type_names(path: pathlib.Path) -> list[str]:
    """The string constants of a module that are an event type's name, or quote one as SQL does."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in TYPE_NAMES
                if node.value == name or f"'{name}'" in node.value
            ]
    return found


def test_no_projection_reactor_or_service_spells_an_event_type_name_in_a_string() -> None:
    # By class (`User.Deactivated.TOPIC`), a renamed or removed event class fails the type check; by string, it
    # would silently stop whatever picked its events.
    modules = [
        path for folder in ("projections", "reactors", "app") for path in (ROOT / folder).rglob("*.py")
    ]
    assert [found for path in sorted(modules) for found in spelled_type_names(path)] == []


def test_the_membership_events_are_the_users_group_changes() -> None:
    assert {User.JoinedGroup.TOPIC, User.LeftGroup.TOPIC} == MEMBERSHIP_EVENT_TYPE_NAMES


def test_each_project_and_role_event_has_its_kind_and_a_groups_events_none() -> None:
    assert {
        **dict.fromkeys([Project.Created.TOPIC, Project.Renamed.TOPIC, Project.Archived.TOPIC], "project"),
        **dict.fromkeys([Role.Created.TOPIC, Role.Renamed.TOPIC, Role.Archived.TOPIC], "role"),
    } == ENTITY_KIND_OF_EVENT
    assert not {Group.Created.TOPIC, Group.Linked.TOPIC, Group.Unlinked.TOPIC} & set(ENTITY_KIND_OF_EVENT)
    assert OrgSchema.Declared.TOPIC not in ENTITY_KIND_OF_EVENT
