import dataclasses
import uuid

import msgspec
import pytest

from domain.users import User
from eventstore.records import decode_event, encode_event


def test_events_survive_encoding_unchanged() -> None:
    user = User(
        org_id="org",
        attributes={"userName": "bob", "emails": [{"value": "b@x", "primary": True}]},
        active=True,
    )
    user.replace({"userName": "bob", "title": "T"}, active=False)
    user.delete()
    for event in user.collect_events():
        encoded = encode_event(event)
        payload = msgspec.json.decode(encoded.payload)
        decoded = decode_event(
            encoded.type, encoded.schema_version, payload, user.id, encoded.version, encoded.occurred_at
        )
        assert type(decoded) is type(event)
        assert vars(decoded) == vars(event)


def test_the_payload_holds_the_events_own_fields_and_not_the_envelope() -> None:
    user = User(org_id="org", attributes={"userName": "bob"}, active=True)
    encoded = encode_event(user.collect_events()[0])
    assert (encoded.type, encoded.schema_version, encoded.version) == ("UserProvisioned", 2, 1)
    assert msgspec.json.decode(encoded.payload) == {
        "originator_topic": "User",
        "org_id": "org",
        "attributes": {"userName": "bob"},
        "active": True,
    }


def test_a_version_1_user_provisioned_is_upcast_to_version_2() -> None:
    stream_id = uuid.uuid4()
    occurred_at = User(org_id="o", attributes={"userName": "x"}, active=True).created_on
    v1 = {
        "originator_topic": "User",
        "org_id": "org",
        "attributes": {"userName": "old"},
        "active": True,
        "email": "old@example.com",
    }
    event = decode_event("UserProvisioned", 1, v1, stream_id, 1, occurred_at)
    assert isinstance(event, User.Provisioned)
    assert event.attributes == {
        "userName": "old",
        "emails": [{"value": "old@example.com", "type": "work", "primary": True}],
    }
    assert "email" not in vars(event)
    user = event.mutate(None)
    assert isinstance(user, User)
    assert user.attributes["emails"][0]["value"] == "old@example.com"


def test_events_are_immutable() -> None:
    event = User(org_id="org", attributes={"userName": "bob"}, active=True).collect_events()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.active = False  # type: ignore[misc]


@pytest.mark.parametrize("version", [1, 2])
def test_a_user_deactivated_without_unassigned_is_a_deactivation_that_left_active_assigned(
    version: int,
) -> None:
    """Version 1 had no field at all: every deactivation set active to false; the upcast says so. A version 2
    event without it reads the same, as the field has a default (DESIGN §7.2: new fields get defaults)."""
    user = User(org_id="org", attributes={"userName": "old"}, active=True)
    provisioned = user.collect_events()[0]
    event = decode_event("UserDeactivated", version, {}, user.id, 2, provisioned.timestamp)
    assert isinstance(event, User.Deactivated)
    assert event.unassigned is False
    replayed = event.mutate(provisioned.mutate(None))
    assert isinstance(replayed, User)
    assert (replayed.active, replayed.active_unassigned) == (False, False)
