"""Public events: the stable shape in which the host app's backend receives the log (the feed, webhooks).

Domain events are not a contract: they may be renamed, split or upcast (DESIGN §3, §8). Public events are: a
documented vocabulary of types (`PUBLIC_EVENT_TYPES`, version `VOCABULARY_VERSION`), each a msgspec Struct
whose JSON Schema is committed in docs/events/ (docs/events.md gives the policy), produced by one mapping
from domain event *classes* (projections/public_event_mapping.py). Within a version, a type's shape changes
only by adding fields; anything else is a new version.

Every public event carries the same envelope: `id`, `type` (the tag), `occurred_at`, `org_id`, `actor`,
`request_id`, `seal`, then `data`, whose shape is the type's own.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sys
import uuid
from typing import Annotated, Any, Literal

import msgspec

VOCABULARY_VERSION = 1

# Why a user left the organization: their identity provider deactivated or deleted them (and the app removed
# them in consequence), or an org admin removed them in the app.
DepartureCause = Literal["identity_provider_deactivation", "identity_provider_deletion", "admin"]
# Why a user who had left became a member again.
ReturnCause = Literal["identity_provider_reactivation", "admin_restore"]
# Why a user joined or left a group: the identity provider pushed it; the identity provider unlinked the
# group; the app archived the group's project or role; the user left the organization; the app granted or
# revoked it (a group the identity provider has not linked).
MembershipCause = Literal["identity_provider", "group_unlinked", "archived", "left_organization", "app"]
# Why a group stopped being linked: the identity provider deleted the link, or the app archived the group's
# project or role.
UnlinkCause = Literal["identity_provider", "archived"]


class Seal(msgspec.Struct, frozen=True):
    """Where the event sits in its organization's tamper-evident chain: `hash` is the chain's seal after this
    event, in hex, and `position` the event's place in the log. `POSITION:HASH` of an organization's latest
    sealed event is exactly what `scimledger audit head --org ORG` prints: compare the two to check that what
    you received is what the chain covers."""

    position: int
    hash: str


class PublicEvent(msgspec.Struct, frozen=True, tag_field="type"):
    """The envelope every public event shares. `type` is written first, from the subclass's tag.

    `id`: unique and stable, derived from the event's identity in the log (its organization, stream and
    version), so the same event always has the same id, in the feed and in every webhook retry.
    `actor`: who caused it, `token:<token id>`, `admin:<name>`, or a reactor's name when the service decided
    it. `request_id`: the HTTP request that caused it, when one did. `seal`: null until the service has
    sealed the event (usually within a second of its commit).
    """

    id: str
    occurred_at: Annotated[datetime.datetime, msgspec.Meta(tz=True)]
    org_id: uuid.UUID
    actor: str
    request_id: str | None
    seal: Seal | None


# --- data of each type -------------------------------------------------------------------------------------


class UserCreatedData(msgspec.Struct, frozen=True):
    """`attributes`: the user's SCIM profile as provisioned (userName, name, emails, externalId, the
    enterprise extension...), in SCIM's canonical shape; never a password."""

    user_id: uuid.UUID
    user_name: str
    active: bool
    attributes: dict[str, Any]


class UserUpdatedData(msgspec.Struct, frozen=True):
    """Top-level SCIM attributes that took new values (`changed`) and those that became unassigned
    (`removed`)."""

    user_id: uuid.UUID
    changed: dict[str, Any]
    removed: list[str]


class UserData(msgspec.Struct, frozen=True):
    user_id: uuid.UUID


class UserDepartureData(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    cause: DepartureCause


class UserReturnData(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    cause: ReturnCause


class UserErasureData(msgspec.Struct, frozen=True):
    """The person's data was erased: the host app should erase what it copied from earlier events (the
    feed and webhooks now show "[erased]" in their place). `reason`: why, in the words of whoever asked (the
    envelope's `actor`: an admin, a token, or `retention`, the organization's retention policy)."""

    user_id: uuid.UUID
    reason: str


class GroupData(msgspec.Struct, frozen=True):
    group_id: uuid.UUID


class GroupUnlinkData(msgspec.Struct, frozen=True):
    group_id: uuid.UUID
    cause: UnlinkCause


class MembershipData(msgspec.Struct, frozen=True):
    """A user gained or lost membership of a group: the access of the group's Project × Role pair."""

    group_id: uuid.UUID
    user_id: uuid.UUID
    cause: MembershipCause


class ProjectData(msgspec.Struct, frozen=True):
    project_id: uuid.UUID
    name: str


class ProjectRef(msgspec.Struct, frozen=True):
    project_id: uuid.UUID


class RoleData(msgspec.Struct, frozen=True):
    role_id: uuid.UUID
    name: str


class RoleRef(msgspec.Struct, frozen=True):
    role_id: uuid.UUID


# --- the vocabulary ------------------------------------------------------------------------------------------


class UserCreated(PublicEvent, frozen=True, tag="user.created"):
    data: UserCreatedData


class UserUpdated(PublicEvent, frozen=True, tag="user.updated"):
    data: UserUpdatedData


class UserDeactivated(PublicEvent, frozen=True, tag="user.deactivated"):
    data: UserData


class UserReactivated(PublicEvent, frozen=True, tag="user.reactivated"):
    data: UserData


class UserDeleted(PublicEvent, frozen=True, tag="user.deleted"):
    data: UserData


class UserRemovedFromOrganization(PublicEvent, frozen=True, tag="user.removed_from_organization"):
    data: UserDepartureData


class UserJoinedOrganization(PublicEvent, frozen=True, tag="user.joined_organization"):
    data: UserReturnData


class UserErased(PublicEvent, frozen=True, tag="user.erased"):
    data: UserErasureData


class GroupLinked(PublicEvent, frozen=True, tag="group.linked"):
    data: GroupData


class GroupUnlinked(PublicEvent, frozen=True, tag="group.unlinked"):
    data: GroupUnlinkData


class GroupMemberAdded(PublicEvent, frozen=True, tag="group.member_added"):
    data: MembershipData


class GroupMemberRemoved(PublicEvent, frozen=True, tag="group.member_removed"):
    data: MembershipData


class ProjectCreated(PublicEvent, frozen=True, tag="project.created"):
    data: ProjectData


class ProjectRenamed(PublicEvent, frozen=True, tag="project.renamed"):
    data: ProjectData


class ProjectArchived(PublicEvent, frozen=True, tag="project.archived"):
    data: ProjectRef


class RoleCreated(PublicEvent, frozen=True, tag="role.created"):
    data: RoleData


class RoleRenamed(PublicEvent, frozen=True, tag="role.renamed"):
    data: RoleData


class RoleArchived(PublicEvent, frozen=True, tag="role.archived"):
    data: RoleRef


PUBLIC_EVENT_CLASSES: tuple[type[PublicEvent], ...] = (
    UserCreated,
    UserUpdated,
    UserDeactivated,
    UserReactivated,
    UserDeleted,
    UserRemovedFromOrganization,
    UserJoinedOrganization,
    UserErased,
    GroupLinked,
    GroupUnlinked,
    GroupMemberAdded,
    GroupMemberRemoved,
    ProjectCreated,
    ProjectRenamed,
    ProjectArchived,
    RoleCreated,
    RoleRenamed,
    RoleArchived,
)


def type_name(public_class: type[PublicEvent]) -> str:
    tag: str = public_class.__struct_config__.tag  # type: ignore[assignment]
    return tag


PUBLIC_EVENT_TYPES: dict[str, type[PublicEvent]] = {type_name(cls): cls for cls in PUBLIC_EVENT_CLASSES}

# Decodes any public event by its `type`: what a consumer written in Python would use, and the tests.
AnyPublicEvent = (
    UserCreated
    | UserUpdated
    | UserDeactivated
    | UserReactivated
    | UserDeleted
    | UserRemovedFromOrganization
    | UserJoinedOrganization
    | UserErased
    | GroupLinked
    | GroupUnlinked
    | GroupMemberAdded
    | GroupMemberRemoved
    | ProjectCreated
    | ProjectRenamed
    | ProjectArchived
    | RoleCreated
    | RoleRenamed
    | RoleArchived
)


def json_schemas() -> dict[str, dict[str, Any]]:
    """Each public type's JSON Schema (draft 2020-12, as msgspec writes it), by type name: what docs/events/
    holds, one file per type."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, public_class in PUBLIC_EVENT_TYPES.items():
        schema = msgspec.json.schema(public_class)
        schemas[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://scimledger.dev/events/v{VOCABULARY_VERSION}/{name}.json",
            "title": name,
            **schema,
        }
    return schemas


def write_json_schemas(directory: pathlib.Path) -> list[pathlib.Path]:
    """Write `json_schemas()` into `directory`, one `<type>.json` per type, as committed in docs/events/v1/."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    # .venv/bin/python -m projections.public_events docs/events/v1
    for written_path in write_json_schemas(pathlib.Path(sys.argv[1])):
        print(written_path)
