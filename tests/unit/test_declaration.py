"""An org admin's schema file (RFC 7643 §7's format), decoded and checked before anything is recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scim.core_schemas import ENTERPRISE_USER, USER
from scim.declaration import (
    InvalidDeclaration,
    check_apart,
    declaration_of,
    parse_declaration,
    to_document,
    to_schema,
)
from scim.errors import ScimError
from scim.filter import parse_attribute_list
from scim.selection import select_attributes

ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def declaration(*attributes: dict[str, Any], urn: str = ACME) -> bytes:
    return json.dumps(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": urn,
            "name": "AcmeUser",
            "description": "Acme's own attributes",
            "attributes": list(attributes),
        }
    ).encode()


def refusal(*attributes: dict[str, Any], urn: str = ACME) -> str:
    with pytest.raises(InvalidDeclaration) as refused:
        parse_declaration(declaration(*attributes, urn=urn))
    return str(refused.value)


ACME_ATTRIBUTES = (
    {"name": "costCode", "type": "string", "required": True},
    {"name": "badgeNumber", "type": "integer"},
    {"name": "startDate", "type": "dateTime"},
    {"name": "skills", "type": "string", "multiValued": True, "caseExact": True},
    {
        "name": "desk",
        "type": "complex",
        "subAttributes": [{"name": "building", "type": "string"}, {"name": "floor", "type": "integer"}],
    },
)


def test_a_declaration_in_rfc_7643_format_becomes_a_schema_with_every_attribute() -> None:
    schema = to_schema(parse_declaration(declaration(*ACME_ATTRIBUTES)))
    assert schema.id == ACME
    assert schema.name == "AcmeUser"
    cost_code = schema.attribute("COSTCODE")
    assert cost_code is not None
    assert cost_code.required
    assert cost_code.type == "string"
    skills = schema.attribute("skills")
    assert skills is not None
    assert skills.multi_valued
    assert skills.case_exact
    desk = schema.attribute("desk")
    assert desk is not None
    assert desk.sub("floor") is not None
    assert desk.sub("floor").type == "integer"


def test_the_recorded_document_reads_back_as_the_same_declaration() -> None:
    parsed = parse_declaration(declaration(*ACME_ATTRIBUTES))
    document = to_document(parsed)
    assert document["attributes"][0] == {
        "name": "costCode",
        "type": "string",
        "multiValued": False,
        "description": "",
        "required": True,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
        "canonicalValues": [],
        "referenceTypes": [],
        "subAttributes": [],
    }
    assert declaration_of(json.loads(json.dumps(document))) == parsed


def test_oktas_custom_namespace_is_a_urn_like_any_other() -> None:
    okta = "urn:okta:acme_app:1.0:user:custom"
    assert to_schema(parse_declaration(declaration({"name": "costCode"}, urn=okta))).id == okta


def test_an_unknown_type_is_refused_naming_the_attribute() -> None:
    detail = refusal({"name": "costCode", "type": "text"})
    assert "'costCode'" in detail
    assert "unknown type 'text'" in detail
    assert "string" in detail


@pytest.mark.parametrize(
    "urn",
    [
        ENTERPRISE_USER,
        ENTERPRISE_USER.upper(),
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:core:2.0:Group",
    ],
)
def test_a_urn_of_the_core_schemas_or_the_enterprise_extension_is_refused(urn: str) -> None:
    assert "defines itself" in refusal({"name": "costCode"}, urn=urn)


@pytest.mark.parametrize(
    "urn", [f"{ENTERPRISE_USER}:sub", "urn:ietf:params:scim:schemas:extension:enterprise:2.0"]
)
def test_a_urn_nesting_with_a_built_in_one_is_refused(urn: str) -> None:
    assert "nest" in refusal({"name": "a"}, urn=urn)


def test_urns_nest_when_one_is_the_other_followed_by_a_colon_whatever_their_case() -> None:
    check_apart(ACME, [ACME.upper(), "urn:ietf:params:scim:schemas:extension:acme:2.0:UserX"])
    for other in (f"{ACME}:desk", "URN:ietf:params:scim:schemas:extension:acme:2.0"):
        with pytest.raises(InvalidDeclaration, match="nest"):
            check_apart(ACME, [other])


def test_a_name_longer_than_any_identity_providers_is_refused_without_echoing_it_whole() -> None:
    refused = refusal({"name": "a" * 5000})
    assert "at most 128 characters" in refused
    assert len(refused) < 300


def test_subattributes_nested_thousands_deep_are_refused_in_one_line() -> None:
    depth = 5000
    nested = '{"name": "n", "type": "complex", "subAttributes": [' * depth + '{"name": "leaf"}' + "]}" * depth
    document = f'{{"id": "{ACME}", "attributes": [{nested}]}}'.encode()
    with pytest.raises(InvalidDeclaration, match="too deeply"):
        parse_declaration(document)


@pytest.mark.parametrize("urn", ["acme", "urn:", "urn:acme", "urn:ietf:params:scim acme:2.0:User", ""])
def test_an_id_that_is_no_urn_is_refused(urn: str) -> None:
    assert "is not a URN" in refusal({"name": "costCode"}, urn=urn)


@pytest.mark.parametrize("name", ["cost code", "1cost", "cost.code", "cost:code", "$ref", ""])
def test_a_name_outside_rfc_7643_attrname_is_refused(name: str) -> None:
    assert f"'{name}'" in refusal({"name": name})
    assert "RFC 7643 §2.1" in refusal({"name": name})


def test_names_that_differ_only_in_case_are_duplicates() -> None:
    detail = refusal({"name": "costCode"}, {"name": "CostCode"})
    assert "'CostCode' is declared twice" in detail


def test_duplicate_sub_attributes_are_refused_with_their_path() -> None:
    detail = refusal(
        {"name": "desk", "type": "complex", "subAttributes": [{"name": "floor"}, {"name": "FLOOR"}]}
    )
    assert "'desk.FLOOR' is declared twice" in detail


def test_sub_attributes_of_a_non_complex_attribute_are_refused() -> None:
    detail = refusal({"name": "costCode", "type": "string", "subAttributes": [{"name": "x"}]})
    assert "'costCode'" in detail
    assert "only a complex attribute has subAttributes" in detail


def test_a_complex_attribute_needs_sub_attributes_and_they_cannot_nest() -> None:
    assert "needs subAttributes" in refusal({"name": "desk", "type": "complex"})
    nested = refusal(
        {
            "name": "desk",
            "type": "complex",
            "subAttributes": [{"name": "room", "type": "complex", "subAttributes": [{"name": "n"}]}],
        }
    )
    assert "'desk.room'" in nested
    assert "one level" in nested


def test_a_required_sub_attribute_is_refused_as_it_would_not_be_enforced() -> None:
    detail = refusal(
        {"name": "desk", "type": "complex", "subAttributes": [{"name": "floor", "required": True}]}
    )
    assert "'desk.floor'" in detail
    assert "cannot be required" in detail


def test_uniqueness_other_than_none_is_refused_clearly() -> None:
    detail = refusal({"name": "badge", "uniqueness": "server"})
    assert "'badge'" in detail
    assert "uniqueness 'server' is not supported" in detail


def test_only_read_write_attributes_are_accepted() -> None:
    assert "mutability 'immutable' is not supported" in refusal({"name": "badge", "mutability": "immutable"})
    assert "mutability 'readOnly' is not supported" in refusal({"name": "badge", "mutability": "readOnly"})
    assert "mutability 'writeOnly'" in refusal({"name": "badge", "mutability": "writeOnly"})


def test_a_field_of_the_wrong_json_type_is_refused_naming_where() -> None:
    detail = refusal({"name": "badge", "multiValued": "often"})
    assert "attributes[0].multiValued" in detail


def test_no_attributes_is_refused() -> None:
    assert "declares no attributes" in refusal()


def test_an_extended_user_type_validates_the_extension_by_its_declaration() -> None:
    user = USER.with_extensions([to_schema(parse_declaration(declaration(*ACME_ATTRIBUTES)))])
    validated = user.validate(
        {
            "userName": "a@x.org",
            ACME.upper(): {"COSTCODE": "CC-1", "badgeNumber": "42", "startDate": "2026-01-02T03:04:05Z"},
        }
    )
    assert validated[ACME] == {
        "costCode": "CC-1",
        "badgeNumber": 42,
        "startDate": "2026-01-02T03:04:05Z",  # checked as a dateTime, kept as sent
    }
    with pytest.raises(ScimError) as missing:
        user.validate({"userName": "a@x.org", ACME: {"badgeNumber": 1}})
    assert "costCode" in missing.value.detail
    assert "required" in missing.value.detail
    with pytest.raises(ScimError) as wrong:
        user.validate({"userName": "a@x.org", ACME: {"costCode": "x", "badgeNumber": "many"}})
    assert "badgeNumber" in wrong.value.detail
    # Without the extension, nothing of it is required.
    assert user.validate({"userName": "a@x.org"}) == {"userName": "a@x.org"}
    # The type without the org's extension ignores it, as RFC 7644 §3.3 lets a server ignore what it lacks.
    assert USER.validate({"userName": "a@x.org", ACME: {"costCode": "x"}}) == {"userName": "a@x.org"}


def test_attribute_selection_reaches_the_extension() -> None:
    user = USER.with_extensions([to_schema(parse_declaration(declaration(*ACME_ATTRIBUTES)))])
    document = {"schemas": [], "id": "1", "userName": "a", ACME: {"costCode": "c", "badgeNumber": 1}}
    selected = select_attributes(user, document, parse_attribute_list(f"{ACME}:costCode"), None)
    assert selected == {"schemas": [], "id": "1", ACME: {"costCode": "c"}}
