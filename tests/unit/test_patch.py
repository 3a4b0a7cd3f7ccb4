from typing import Any

import msgspec
import pytest

from scim.core_schemas import USER
from scim.errors import ScimError
from scim.patch import apply_patch
from scim.patch_request import PatchRequest, parse_operations

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_ID = "2819c223-7f76-453a-919d-413861904646"


def current() -> dict[str, Any]:
    return {
        "userName": "bjensen",
        "active": True,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
        ],
        ENTERPRISE: {"department": "Sales"},
    }


def patch(*operations: dict[str, Any], state: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}
    request = msgspec.convert(body, PatchRequest)
    return apply_patch(USER, state or current(), parse_operations(request), read_only={"id": USER_ID})


def test_oktas_pathless_deactivation_sets_active_false_and_keeps_the_rest() -> None:
    result = patch({"op": "replace", "value": {"active": False}})
    assert result == {**current(), "active": False}


def test_entra_capitalised_ops_and_string_booleans() -> None:
    assert patch({"op": "Replace", "path": "active", "value": "False"})["active"] is False
    assert patch({"op": "REPLACE", "value": {"active": "True"}}, state={**current(), "active": False})[
        "active"
    ]


def test_replace_sub_attribute_by_path() -> None:
    assert patch({"op": "replace", "path": "name.givenName", "value": "Babs"})["name"] == {
        "givenName": "Babs",
        "familyName": "Jensen",
    }


def test_replace_through_a_value_filter_changes_only_matching_values() -> None:
    result = patch({"op": "replace", "path": 'emails[type eq "work"].value', "value": "b@example.com"})
    assert result["emails"] == [
        {"value": "b@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ]


def test_add_through_an_equality_filter_creates_the_value_it_describes() -> None:
    result = patch({"op": "add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555"})
    assert result["phoneNumbers"] == [{"type": "mobile", "value": "+1 555"}]


def test_replace_through_a_filter_that_matches_nothing_and_describes_nothing_is_no_target() -> None:
    with pytest.raises(ScimError) as caught:
        patch({"op": "replace", "path": 'emails[value co "nobody"].type', "value": "other"})
    assert caught.value.scim_type == "noTarget"


def test_pathless_value_keys_may_be_dotted_or_urn_qualified_paths() -> None:
    result = patch(
        {
            "op": "replace",
            "value": {"name.familyName": "Smith", f"{ENTERPRISE}:department": "R&D", "displayName": "Babs"},
        }
    )
    assert result["name"]["familyName"] == "Smith"
    assert result[ENTERPRISE] == {"department": "R&D"}
    assert result["displayName"] == "Babs"


def test_pathless_replace_of_a_complex_attribute_merges_sub_attributes() -> None:
    result = patch({"op": "replace", "value": {"name": {"middleName": "Q"}}})
    assert result["name"] == {"givenName": "Barbara", "familyName": "Jensen", "middleName": "Q"}


def test_add_to_a_multi_valued_attribute_appends_and_a_new_primary_demotes_the_old() -> None:
    result = patch({"op": "add", "path": "emails", "value": [{"value": "new@x.org", "primary": True}]})
    assert [email["value"] for email in result["emails"]] == [
        "bjensen@example.com",
        "babs@jensen.org",
        "new@x.org",
    ]
    assert [email.get("primary") for email in result["emails"]] == [False, None, True]


def test_adding_a_value_already_present_changes_nothing() -> None:
    assert patch({"op": "add", "path": "emails", "value": [current()["emails"][1]]}) == current()


def test_replace_of_a_multi_valued_attribute_replaces_all_values() -> None:
    result = patch({"op": "replace", "path": "emails", "value": [{"value": "only@x.org"}]})
    assert result["emails"] == [{"value": "only@x.org"}]


def test_remove_by_filter_sub_attribute_and_whole_attribute() -> None:
    assert patch({"op": "remove", "path": 'emails[type eq "home"]'})["emails"] == [current()["emails"][0]]
    assert "type" not in patch({"op": "remove", "path": 'emails[value ew ".org"].type'})["emails"][1]
    assert "emails" not in patch({"op": "remove", "path": "emails"})
    assert ENTERPRISE not in patch({"op": "remove", "path": f"{ENTERPRISE}:department"})


def test_removing_something_absent_is_a_no_op() -> None:
    assert patch({"op": "remove", "path": 'emails[value eq "absent@x"]'}) == current()
    assert patch({"op": "remove", "path": "nickName"}) == current()


def test_null_value_unassigns() -> None:
    assert "displayName" not in patch(
        {"op": "replace", "value": {"displayName": None}}, state={**current(), "displayName": "B"}
    )


def test_echoing_the_id_back_is_accepted_but_changing_it_is_a_mutability_error() -> None:
    assert patch({"op": "replace", "value": {"id": USER_ID, "active": False}})["active"] is False
    with pytest.raises(ScimError) as caught:
        patch({"op": "replace", "value": {"id": "another"}})
    assert caught.value.scim_type == "mutability"


def test_groups_are_read_only_through_user_patch() -> None:
    with pytest.raises(ScimError) as caught:
        patch({"op": "add", "path": "groups", "value": [{"value": "g"}]})
    assert caught.value.scim_type == "mutability"


def test_password_is_accepted_and_dropped() -> None:
    assert patch({"op": "replace", "value": {"password": "s3cret"}}) == current()


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        ({"op": "remove"}, "noTarget"),
        ({"op": "move", "path": "title", "value": "x"}, "invalidValue"),
        ({"op": "replace", "path": "title"}, "invalidValue"),
        ({"op": "replace", "path": "nonsense", "value": 1}, "invalidPath"),
        ({"op": "replace", "path": "name.nonsense", "value": 1}, "invalidPath"),
        ({"op": "replace", "path": "title[value eq 1]", "value": 1}, "invalidPath"),
        ({"op": "replace", "path": "userName", "value": 42}, "invalidValue"),
        ({"op": "remove", "path": "userName"}, "invalidValue"),
        ({"op": "replace", "value": "not an object"}, "invalidValue"),
    ],
)
def test_invalid_operations_are_refused_with_the_right_scim_type(
    operation: dict[str, Any], scim_type: str
) -> None:
    with pytest.raises(ScimError) as caught:
        patch(operation)
    assert (caught.value.status, caught.value.scim_type) == (400, scim_type)


def test_a_failing_operation_leaves_the_current_state_untouched() -> None:
    state = current()
    with pytest.raises(ScimError):
        patch(
            {"op": "replace", "path": "title", "value": "T"},
            {"op": "replace", "path": "bogus", "value": 1},
            state=state,
        )
    assert state == current()
