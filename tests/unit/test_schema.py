import pytest

from scim.core_schemas import ENTERPRISE_USER, USER, USER_SCHEMA
from scim.errors import ScimError
from scim.filter import parse_attribute_list
from scim.resource_type import ResourceType
from scim.schema import Attribute, Schema
from scim.selection import select_attributes


def test_okta_create_body_keeps_the_profile_and_drops_password_and_groups() -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "isaac@example.com",
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": True, "value": "isaac@example.com", "type": "work"}],
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    assert USER.validate(body) == {
        "externalId": "00ujl29u0le5T6Aj10h7",
        "userName": "isaac@example.com",
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "active": True,
        "emails": [{"value": "isaac@example.com", "type": "work", "primary": True}],
    }


def test_read_only_attributes_sent_by_the_client_are_ignored() -> None:
    validated = USER.validate(
        {"userName": "a", "id": "x", "meta": {"version": "1"}, "groups": [{"value": "g"}]}
    )
    assert validated == {"userName": "a"}


def test_attribute_names_are_case_insensitive_and_stored_canonically() -> None:
    assert USER.validate(
        {"USERNAME": "a", "Name": {"GIVENNAME": "A"}, ENTERPRISE_USER.lower(): {"DEPARTMENT": "x"}}
    ) == {"userName": "a", "name": {"givenName": "A"}, ENTERPRISE_USER: {"department": "x"}}


def test_unknown_attributes_are_ignored_and_nulls_mean_unassigned() -> None:
    assert USER.validate({"userName": "a", "favouriteColour": "red", "title": None, "emails": []}) == {
        "userName": "a"
    }


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "userName"),
        ({"userName": ""}, "userName' must not be empty"),
        ({"userName": 7}, "userName"),
        ({"userName": "a", "active": "maybe"}, "active"),
        ({"userName": "a", "emails": [{"value": 5}]}, "emails[0].value"),
        ({"userName": "a", "name": "Barbara"}, "name"),
        ({"userName": "a", ENTERPRISE_USER: {"manager": "boss"}}, "manager"),
    ],
)
def test_wrong_types_and_missing_required_attributes_are_invalid_value_naming_the_attribute(
    body: dict[str, object], named: str
) -> None:
    with pytest.raises(ScimError) as caught:
        USER.validate(body)
    assert caught.value.scim_type == "invalidValue"
    assert named in caught.value.detail


DOCUMENT = {
    "schemas": ["s"],
    "id": "1",
    "userName": "a",
    "name": {"givenName": "A", "familyName": "B"},
    "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x"}],
    ENTERPRISE_USER: {"department": "D", "costCenter": "C"},
    "meta": {"resourceType": "User"},
}


def test_attributes_parameter_returns_only_those_plus_schemas_and_id() -> None:
    selected = select_attributes(
        USER,
        DOCUMENT,
        parse_attribute_list(f"USERNAME,name.familyName,emails.value,{ENTERPRISE_USER}:department"),
        None,
    )
    assert selected == {
        "schemas": ["s"],
        "id": "1",
        "userName": "a",
        "name": {"familyName": "B"},
        "emails": [{"value": "a@x"}, {"value": "b@x"}],
        ENTERPRISE_USER: {"department": "D"},
    }


def test_excluded_attributes_never_remove_id() -> None:
    selected = select_attributes(USER, DOCUMENT, None, parse_attribute_list("emails,id,meta,name.givenName"))
    assert selected == {
        "schemas": ["s"],
        "id": "1",
        "userName": "a",
        "name": {"familyName": "B"},
        ENTERPRISE_USER: {"department": "D", "costCenter": "C"},
    }


def test_schema_order_is_restored_for_rendering() -> None:
    ordered = USER.in_schema_order(
        {"emails": [], "active": True, "userName": "a", "name": {"givenName": "g", "familyName": "f"}}
    )
    assert list(ordered) == ["userName", "name", "active", "emails"]
    assert list(ordered["name"]) == ["familyName", "givenName"]


def test_an_extension_attribute_takes_its_short_name_only_where_that_name_means_one_attribute() -> None:
    first = Schema("urn:x:First", "First", "", (Attribute("title"), Attribute("region"), Attribute("badge")))
    second = Schema("urn:x:Second", "Second", "", (Attribute("region"),))
    kind = ResourceType("User", "/Users", "", USER_SCHEMA, (first, second))
    badge = kind.resolve(None, "Badge")
    assert badge is not None
    assert (badge.extension, badge.attribute.name) == ("urn:x:First", "badge")
    title = kind.resolve(None, "title")
    assert title is not None
    assert title.extension is None, "a core attribute of the same name wins: the short name is the core one"
    assert kind.resolve(None, "region") is None, "two extensions have it: the short name is ambiguous"
    region = kind.resolve("urn:x:Second", "region")
    assert region is not None
    assert region.extension == "urn:x:Second"
    assert kind.extension_at("urn:x", "First") is first
    assert kind.extension_at(None, "First") is None
