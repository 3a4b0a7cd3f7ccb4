from typing import Any

import msgspec
import pytest

from scim.errors import ScimError
from scim.group_patch import MembershipStep, plan_patch, plan_put
from scim.patch_request import PatchRequest, parse_operations


def plan(*operations: dict[str, Any]):  # type: ignore[no-untyped-def]
    request = msgspec.convert({"Operations": list(operations)}, PatchRequest)
    return plan_patch(parse_operations(request))


def test_oktas_membership_diff_operations_become_steps() -> None:
    change = plan(
        {"op": "add", "path": "members", "value": [{"value": "u1", "display": "Ann"}, {"value": "u2"}]},
        {"op": "remove", "path": 'members[value eq "u3"]'},
        {"op": "remove", "path": "members", "value": [{"value": "u4"}]},
    )
    assert change.steps == [
        MembershipStep("add", ("u1", "u2")),
        MembershipStep("remove", ("u3",)),
        MembershipStep("remove", ("u4",)),
    ]


def test_a_full_resync_and_removing_everyone() -> None:
    assert plan({"op": "replace", "path": "members", "value": [{"value": "u1"}]}).steps == [
        MembershipStep("replace", ("u1",))
    ]
    assert plan({"op": "remove", "path": "members"}).steps == [MembershipStep("remove_all")]
    assert plan({"op": "Replace", "value": {"members": []}}).steps == [MembershipStep("replace", ())]


def test_removal_by_any_other_filter_is_matched_against_the_members() -> None:
    [step] = plan({"op": "remove", "path": 'members[display sw "A"]'}).steps
    assert step.kind == "remove_matching"
    assert plan({"op": "remove", "path": 'members[value eq "a" or value eq "b"]'}).steps == [
        MembershipStep("remove", ("a", "b"))
    ]


def test_oktas_pathless_replace_after_each_change_carries_id_and_current_name() -> None:
    change = plan({"op": "replace", "value": {"id": "g1", "displayName": "Statsig-Apollo-Admin"}})
    assert change.steps == []
    change.check_identity("g1", "Statsig-Apollo-Admin")


def test_a_different_display_name_is_refused_with_the_okta_setting_to_change() -> None:
    change = plan({"op": "replace", "value": {"id": "g1", "displayName": "Renamed in Okta"}})
    with pytest.raises(ScimError) as caught:
        change.check_identity("g1", "Statsig-Apollo-Admin")
    assert (caught.value.status, caught.value.scim_type) == (400, "mutability")
    assert "Rename Groups" in caught.value.detail


def test_a_different_id_is_refused() -> None:
    with pytest.raises(ScimError) as caught:
        plan({"op": "replace", "value": {"id": "other"}}).check_identity("g1", "name")
    assert caught.value.scim_type == "mutability"


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        ({"op": "add", "path": "members", "value": [{"display": "no value"}]}, "invalidValue"),
        ({"op": "add", "path": "members", "value": [{"value": 7}]}, "invalidValue"),
        ({"op": "replace", "path": 'members[value eq "a"]', "value": {"value": "b"}}, "invalidPath"),
        ({"op": "replace", "path": "members.display", "value": "x"}, "invalidPath"),
        ({"op": "remove", "path": "displayName"}, "mutability"),
        ({"op": "replace", "path": "nonsense", "value": "x"}, "invalidPath"),
    ],
)
def test_invalid_group_operations(operation: dict[str, Any], scim_type: str) -> None:
    with pytest.raises(ScimError) as caught:
        plan(operation)
    assert caught.value.scim_type == scim_type


def test_put_replaces_membership_and_requires_the_display_name() -> None:
    change = plan_put({"displayName": "N", "members": [{"value": "u1"}], "id": "ignored"})
    assert change.steps == [MembershipStep("replace", ("u1",))]
    assert change.display_names == ["N"]
    with pytest.raises(ScimError) as caught:
        plan_put({"members": []})
    assert caught.value.scim_type == "invalidValue"
