"""The one mapping from domain events to public events (projections/public_events.py).

Domain events are picked by class, never by a spelled type name, and read after their upcasts (through
`RecordedEvent.to_domain_event`), so a domain event that evolves changes this mapping at most, never the
public shape. Every domain event class is either mapped (`MAPPINGS`) or skipped with a reason (`SKIPPED`):
tests/unit/test_public_events.py fails on a class that is neither, so a new domain event cannot go unpublished
by accident. A skipped event has no public meaning; a reader of the feed still moves past it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import msgspec
from eventsourcing.domain import Aggregate

from domain.catalog import Group, Project, Role, UnlinkCause
from domain.org_schemas import OrgSchema
from domain.users import DepartureCause, GroupChangeCause, ReturnCause, User
from eventstore.records import AggregateEvent, RecordedEvent
from projections import public_events as public
from projections.public_events import PublicEvent, Seal

# Namespace of the public ids: uuid5 of an event's key in the log, (org, stream, version), which is what
# identifies it forever. Not its log position: that is a storage detail (a copy of the log into new tables,
# or a sharded one, numbers it afresh) and would tell every tenant how busy the whole platform is.
_EVENT_ID_NAMESPACE_BYTES = uuid.UUID("0b8f5a52-64a3-4c1e-9a0e-5d2f7f7f3c11").bytes

# Write-only SCIM attributes (RFC 7643 §2.2): the service never keeps them, and a public event never carries
# one even if an old payload did.
_SECRET_ATTRIBUTES = frozenset({"password"})

# The domain's causes in the public vocabulary's words; keyed by the domain's literals, checked exhaustive by
# the unit tests, so that a new domain cause must be given a public name.
DEPARTURE_CAUSES: Mapping[DepartureCause, public.DepartureCause] = {
    "okta_deactivation": "identity_provider_deactivation",
    "okta_delete": "identity_provider_deletion",
    "admin": "admin",
}
RETURN_CAUSES: Mapping[ReturnCause, public.ReturnCause] = {
    "okta_reactivation": "identity_provider_reactivation",
    "admin_restore": "admin_restore",
}
MEMBERSHIP_CAUSES: Mapping[GroupChangeCause, public.MembershipCause] = {
    "push": "identity_provider",
    "unlink": "group_unlinked",
    "archive": "archived",
    "reactor": "left_organization",
    "app": "app",
}
UNLINK_CAUSES: Mapping[UnlinkCause, public.UnlinkCause] = {
    "unlink": "identity_provider",
    "archive": "archived",
}


def event_id(org_id: uuid.UUID, stream_id: uuid.UUID, version: int) -> str:
    """A version-5 UUID (RFC 9562: SHA-1 in a namespace) of the event's key: the namespace's 16 bytes, then
    the organization's, the stream's, and the version as 8 bytes big-endian. Spelled out rather than
    `uuid.uuid5`, which needs the key as text first: this is half the cost of publishing an event."""
    digest = bytearray(
        hashlib.sha1(
            _EVENT_ID_NAMESPACE_BYTES + org_id.bytes + stream_id.bytes + version.to_bytes(8, "big"),
            usedforsecurity=False,
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC's variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _public_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if key not in _SECRET_ATTRIBUTES}


# What each mapped domain event becomes: its public class, and its `data` from the domain event.
DataOf = Callable[[Any], msgspec.Struct]


class Mapping_(NamedTuple):
    public_class: type[PublicEvent]
    data: DataOf


def _user(event: AggregateEvent) -> public.UserData:
    return public.UserData(event.originator_id)


def _created(event: User.Provisioned) -> public.UserCreatedData:
    attributes = _public_attributes(event.attributes)
    return public.UserCreatedData(
        event.originator_id, str(attributes.get("userName", "")), event.active, attributes
    )


def _updated(event: User.ProfileUpdated) -> public.UserUpdatedData:
    removed = [name for name in event.removed if name not in _SECRET_ATTRIBUTES]
    return public.UserUpdatedData(event.originator_id, _public_attributes(event.changed), removed)


def _membership(event: User.JoinedGroup | User.LeftGroup) -> public.MembershipData:
    return public.MembershipData(
        uuid.UUID(event.group_id), event.originator_id, MEMBERSHIP_CAUSES[event.cause]
    )


MAPPINGS: dict[type[Aggregate.Event], Mapping_] = {
    User.Provisioned: Mapping_(public.UserCreated, _created),
    User.ProfileUpdated: Mapping_(public.UserUpdated, _updated),
    User.Deactivated: Mapping_(public.UserDeactivated, _user),
    User.Reactivated: Mapping_(public.UserReactivated, _user),
    User.Deleted: Mapping_(public.UserDeleted, _user),
    User.RemovedFromOrganization: Mapping_(
        public.UserRemovedFromOrganization,
        lambda event: public.UserDepartureData(event.originator_id, DEPARTURE_CAUSES[event.cause]),
    ),
    User.JoinedOrganization: Mapping_(
        public.UserJoinedOrganization,
        lambda event: public.UserReturnData(event.originator_id, RETURN_CAUSES[event.cause]),
    ),
    User.Erased: Mapping_(
        public.UserErased, lambda event: public.UserErasureData(event.originator_id, event.reason)
    ),
    User.JoinedGroup: Mapping_(public.GroupMemberAdded, _membership),
    User.LeftGroup: Mapping_(public.GroupMemberRemoved, _membership),
    Group.Linked: Mapping_(public.GroupLinked, lambda event: public.GroupData(event.originator_id)),
    Group.Unlinked: Mapping_(
        public.GroupUnlinked,
        lambda event: public.GroupUnlinkData(event.originator_id, UNLINK_CAUSES[event.cause]),
    ),
    Project.Created: Mapping_(
        public.ProjectCreated, lambda event: public.ProjectData(event.originator_id, event.name)
    ),
    Project.Renamed: Mapping_(
        public.ProjectRenamed, lambda event: public.ProjectData(event.originator_id, event.name)
    ),
    Project.Archived: Mapping_(public.ProjectArchived, lambda event: public.ProjectRef(event.originator_id)),
    Role.Created: Mapping_(
        public.RoleCreated, lambda event: public.RoleData(event.originator_id, event.name)
    ),
    Role.Renamed: Mapping_(
        public.RoleRenamed, lambda event: public.RoleData(event.originator_id, event.name)
    ),
    Role.Archived: Mapping_(public.RoleArchived, lambda event: public.RoleRef(event.originator_id)),
}

# Domain events with no public meaning, and why. The feed moves past them without publishing anything.
SKIPPED: dict[type[Aggregate.Event], str] = {
    User.Created: "never recorded: users are created by User.Provisioned",
    OrgSchema.Created: "never recorded: an org's schemas are created by OrgSchema.Declared",
    Group.Created: "the app's bookkeeping of a Project × Role pair; it means something once linked (group.linked)",
    OrgSchema.Declared: "the org's SCIM schema configuration, not a fact about its users or their access",
    OrgSchema.Redeclared: "the org's SCIM schema configuration, not a fact about its users or their access",
}

_MAPPING_BY_TOPIC: dict[str, Mapping_] = {
    event_class.TOPIC: mapping  # type: ignore[attr-defined]
    for event_class, mapping in MAPPINGS.items()
}
# The stored type names of the domain events behind each public type.
DOMAIN_TYPE_NAMES: dict[str, frozenset[str]] = {
    name: frozenset(
        event_class.TOPIC  # type: ignore[attr-defined]
        for event_class, mapping in MAPPINGS.items()
        if mapping.public_class is public_class
    )
    for name, public_class in public.PUBLIC_EVENT_TYPES.items()
}
PUBLISHED_TYPE_NAMES: frozenset[str] = frozenset(_MAPPING_BY_TOPIC)
# The same, the other way: each stored type name's public type (the webhooks' filter asks it of every event).
_PUBLIC_TYPE_BY_TOPIC: dict[str, str] = {
    topic: name for name, topics in DOMAIN_TYPE_NAMES.items() for topic in topics
}


class UnknownEventType(ValueError):
    def __init__(self, unknown: Iterable[str]) -> None:
        names = ", ".join(sorted(unknown))
        super().__init__(
            f"Unknown event type {names}: the types are {', '.join(public.PUBLIC_EVENT_TYPES)} "
            f"(vocabulary version {public.VOCABULARY_VERSION}, docs/events.md)."
        )


def domain_type_names(public_types: Iterable[str] | None) -> frozenset[str]:
    """The stored type names of the domain events that become any of `public_types` (all published ones if
    None); UnknownEventType names those that are not in the vocabulary."""
    if public_types is None:
        return PUBLISHED_TYPE_NAMES
    wanted = set(public_types)
    unknown = wanted - DOMAIN_TYPE_NAMES.keys()
    if unknown:
        raise UnknownEventType(unknown)
    return frozenset().union(*(DOMAIN_TYPE_NAMES[name] for name in wanted))


def to_public(event: RecordedEvent, seal: bytes | None = None) -> PublicEvent | None:
    """The public event of a recorded domain event, with its seal if it has one; None if it has no public
    meaning."""
    mapping = _MAPPING_BY_TOPIC.get(event.type)
    if mapping is None:
        return None
    return mapping.public_class(
        id=event_id(event.org_id, event.stream_id, event.version),
        occurred_at=event.occurred_at,
        org_id=event.org_id,
        actor=event.actor,
        request_id=event.request_id,
        seal=Seal(event.position, seal.hex()) if seal is not None else None,
        data=mapping.data(event.to_domain_event()),  # type: ignore[call-arg]
    )


def public_type_of(event: RecordedEvent) -> str | None:
    """The public type a recorded domain event is published as (`user.created`...), None if it is not."""
    return _PUBLIC_TYPE_BY_TOPIC.get(event.type)
