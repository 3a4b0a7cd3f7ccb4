"""Public events: every domain event is published or skipped on purpose, in a shape that is documented."""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import pathlib
import uuid
from typing import Any, get_args

import msgspec
import pytest
from eventsourcing.domain import Aggregate

import domain.catalog
import domain.org_schemas
import domain.users
from domain.catalog import Group, Project
from domain.users import User
from eventstore.records import RecordedEvent, encode_event
from projections import public_event_mapping as mapping
from projections import public_events as public
from projections.public_event_mapping import MAPPINGS, SKIPPED, domain_type_names, event_id, to_public

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "events" / f"v{public.VOCABULARY_VERSION}"
DOMAIN_MODULES = (domain.users, domain.catalog, domain.org_schemas)


def every_domain_event_class() -> set[type[Aggregate.Event]]:
    """Every event class of every aggregate the domain defines, found by walking the classes rather than
    read from a list someone keeps: a new event class is found without anyone adding it anywhere. Left out:
    each aggregate's `Event`, the base the library gives it (never stored), and abstract aggregates (`_Named`)
    whose events exist only as their concrete subclasses'."""
    found: set[type[Aggregate.Event]] = set()
    for module in DOMAIN_MODULES:
        for name, aggregate in inspect.getmembers(module, inspect.isclass):
            if not issubclass(aggregate, Aggregate) or aggregate.__module__ != module.__name__:
                continue
            if name.startswith("_"):
                continue
            for member_name, member in inspect.getmembers(aggregate, inspect.isclass):
                if issubclass(member, Aggregate.Event) and member_name != "Event":
                    found.add(member)
    return found


def test_every_domain_event_class_is_either_published_or_skipped_with_a_reason() -> None:
    classes = every_domain_event_class()
    assert len(classes) >= 20  # the walk finds the events, so the check below means something
    unaccounted = sorted(cls.__qualname__ for cls in classes - MAPPINGS.keys() - SKIPPED.keys())
    assert unaccounted == [], "each new domain event must be mapped to a public type or skipped on purpose"
    assert not MAPPINGS.keys() & SKIPPED.keys()
    assert all(reason.strip() for reason in SKIPPED.values())


def test_the_vocabulary_is_the_documented_one_and_each_type_is_produced() -> None:
    assert set(public.PUBLIC_EVENT_TYPES) == {
        "user.created",
        "user.updated",
        "user.deactivated",
        "user.reactivated",
        "user.deleted",
        "user.removed_from_organization",
        "user.joined_organization",
        "user.erased",
        "group.linked",
        "group.unlinked",
        "group.member_added",
        "group.member_removed",
        "project.created",
        "project.renamed",
        "project.archived",
        "role.created",
        "role.renamed",
        "role.archived",
    }
    assert {entry.public_class for entry in MAPPINGS.values()} == set(public.PUBLIC_EVENT_CLASSES)
    assert set(get_args(public.AnyPublicEvent)) == set(public.PUBLIC_EVENT_CLASSES)


@pytest.mark.parametrize(
    ("domain_literal", "table"),
    [
        (domain.users.DepartureCause, mapping.DEPARTURE_CAUSES),
        (domain.users.ReturnCause, mapping.RETURN_CAUSES),
        (domain.users.GroupChangeCause, mapping.MEMBERSHIP_CAUSES),
        (domain.catalog.UnlinkCause, mapping.UNLINK_CAUSES),
    ],
)
def test_every_domain_cause_has_a_public_name(domain_literal: Any, table: dict[str, str]) -> None:
    assert set(table) == set(get_args(domain_literal))


def recorded(
    event: Any, org_id: uuid.UUID, position: int = 7, schema_version: int | None = None
) -> RecordedEvent:
    encoded = encode_event(event)
    return RecordedEvent(
        position=position,
        tx=1000 + position,
        org_id=org_id,
        stream_id=event.originator_id,
        version=encoded.version,
        type=encoded.type,
        schema_version=schema_version or encoded.schema_version,
        payload=msgspec.json.decode(encoded.payload),
        occurred_at=encoded.occurred_at,
        recorded_at=encoded.occurred_at,
        actor="token:t",
        request_id="req-9",
    )


def test_a_provisioned_user_is_published_as_user_created_without_a_password() -> None:
    org_id = uuid.uuid4()
    user = User(
        org_id=str(org_id), attributes={"userName": "ann@example.com", "password": "hunter2"}, active=True
    )
    [event] = user.collect_events()
    published = to_public(recorded(event, org_id), seal=b"\x01" * 32)
    assert isinstance(published, public.UserCreated)
    body = msgspec.json.decode(msgspec.json.encode(published))
    assert body == {
        "type": "user.created",
        "id": event_id(org_id, user.id, 1),
        "occurred_at": body["occurred_at"],
        "org_id": str(org_id),
        "actor": "token:t",
        "request_id": "req-9",
        "seal": {"position": 7, "hash": "01" * 32},
        "data": {
            "user_id": str(user.id),
            "user_name": "ann@example.com",
            "active": True,
            "attributes": {"userName": "ann@example.com"},
        },
    }
    assert datetime.datetime.fromisoformat(body["occurred_at"]) == event.timestamp
    assert "hunter2" not in json.dumps(body)


def test_an_old_version_of_a_domain_event_is_published_in_todays_shape() -> None:
    org_id = uuid.uuid4()
    user = User(org_id=str(org_id), attributes={"userName": "old"}, active=True)
    [event] = user.collect_events()
    stored = recorded(event, org_id, schema_version=1)
    # Version 1 kept the e-mail address in a field of its own; its upcast moves it into the attributes.
    stored.payload.pop("attributes")["userName"]
    stored.payload.update(attributes={"userName": "old"}, email="old@example.com")
    published = to_public(stored)
    assert isinstance(published, public.UserCreated)
    assert published.data.attributes["emails"] == [
        {"value": "old@example.com", "type": "work", "primary": True}
    ]


def test_membership_and_catalog_events_carry_their_ids_and_public_causes() -> None:
    org_id = uuid.uuid4()
    user = User(org_id=str(org_id), attributes={"userName": "u"}, active=True)
    group_id = uuid.uuid4()
    user.collect_events()
    user.join_group(str(group_id), "push")
    user.leave_group(str(group_id), "reactor")
    added, removed = (to_public(recorded(event, org_id)) for event in user.collect_events())
    assert isinstance(added, public.GroupMemberAdded)
    assert isinstance(removed, public.GroupMemberRemoved)
    assert added.data == public.MembershipData(group_id, user.id, "identity_provider")
    assert removed.data == public.MembershipData(group_id, user.id, "left_organization")

    project = Project(org_id=str(org_id), name="Apollo")
    project.rename("Artemis")
    project.archive()
    created, renamed, archived = (to_public(recorded(event, org_id)) for event in project.collect_events())
    assert (created, renamed, archived) == (
        public.ProjectCreated(**envelope(created), data=public.ProjectData(project.id, "Apollo")),  # type: ignore[arg-type]
        public.ProjectRenamed(**envelope(renamed), data=public.ProjectData(project.id, "Artemis")),  # type: ignore[arg-type]
        public.ProjectArchived(**envelope(archived), data=public.ProjectRef(project.id)),  # type: ignore[arg-type]
    )


def envelope(event: public.PublicEvent | None) -> dict[str, Any]:
    assert event is not None
    return {name: getattr(event, name) for name in public.PublicEvent.__struct_fields__}


def test_a_skipped_domain_event_publishes_nothing() -> None:
    org_id = uuid.uuid4()
    group = Group(org_id=str(org_id), project_id=str(uuid.uuid4()), role_id=str(uuid.uuid4()))
    group.link()
    created, linked = group.collect_events()
    assert to_public(recorded(created, org_id)) is None
    assert isinstance(to_public(recorded(linked, org_id)), public.GroupLinked)


def test_an_events_id_is_its_key_in_the_log_and_nothing_else() -> None:
    org_id, stream_id = uuid.uuid4(), uuid.uuid4()
    assert event_id(org_id, stream_id, 3) == event_id(org_id, stream_id, 3)
    assert (
        len(
            {
                event_id(org_id, stream_id, 3),
                event_id(org_id, stream_id, 4),
                event_id(uuid.uuid4(), stream_id, 3),
            }
        )
        == 3
    )


def test_a_types_filter_names_the_domain_events_behind_it_and_refuses_unknown_types() -> None:
    assert domain_type_names(["group.member_added", "user.created"]) == {
        User.JoinedGroup.TOPIC,
        User.Provisioned.TOPIC,
    }
    assert Group.Created.TOPIC not in domain_type_names(None)
    with pytest.raises(mapping.UnknownEventType, match=r"group\.created"):
        domain_type_names(["group.created"])


def test_the_committed_json_schemas_are_what_the_code_generates() -> None:
    generated = public.json_schemas()
    committed = {path.stem: json.loads(path.read_text()) for path in SCHEMAS.glob("*.json")}
    assert committed == generated, (
        "regenerate them: .venv/bin/python -m projections.public_events docs/events/v1"
    )


def test_each_schema_requires_the_envelope_and_names_its_type() -> None:
    for name, schema in public.json_schemas().items():
        definition = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        assert definition["properties"]["type"] == {"enum": [name]}
        assert set(definition["required"]) == {
            "type",
            "id",
            "occurred_at",
            "org_id",
            "actor",
            "request_id",
            "seal",
            "data",
        }


def test_an_events_id_is_a_version_5_uuid_of_its_key() -> None:
    org_id, stream_id = uuid.uuid4(), uuid.uuid4()
    namespace = uuid.UUID("0b8f5a52-64a3-4c1e-9a0e-5d2f7f7f3c11")
    name = org_id.bytes + stream_id.bytes + (12).to_bytes(8, "big")
    # uuid.uuid5 of Python 3.11 takes only text; RFC 9562's construction, from the bytes:
    expected = bytearray(hashlib.sha1(namespace.bytes + name).digest()[:16])
    expected[6], expected[8] = (expected[6] & 0x0F) | 0x50, (expected[8] & 0x3F) | 0x80
    identifier = uuid.UUID(event_id(org_id, stream_id, 12))
    assert identifier == uuid.UUID(bytes=bytes(expected))
    assert identifier.version == 5
