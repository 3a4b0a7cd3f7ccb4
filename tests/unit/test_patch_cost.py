"""What one PATCH may cost: linear in its body, whatever the shape, and never a stalled event loop.

Work is counted, never timed: values whose equality counts its calls show how often the engine compares
them, and a budget of comparisons is a limit the engine must keep.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import scim.patch
from scim.core_schemas import USER
from scim.errors import ScimError
from scim.group_patch import plan_patch
from scim.patch import PatchLimits, apply_patch
from scim.patch_request import PatchRequest, parse_operations

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Counter:
    comparisons = 0


class CountedEmail(dict[str, Any]):
    """An e-mail value that counts how often it is compared with another value."""

    def __eq__(self, other: object) -> bool:
        Counter.comparisons += 1
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class CountedJunk:
    """Not an e-mail value at all (as the integers of the reported request were), counting comparisons."""

    def __eq__(self, other: object) -> bool:
        Counter.comparisons += 1
        return self is other

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    Counter.comparisons = 0


def _operations(*operations: dict[str, Any]) -> list[scim.patch_request.PatchOperation]:
    # Converted as the HTTP edge converts it; `value` is Any, so the counted values reach the engine as they are.
    request = PatchRequest(
        operations=[msgspec.convert(op, scim.patch_request.PatchOperationBody) for op in operations]
    )
    request.schemas = [PATCH_OP]
    return parse_operations(request)


def _patch(state: dict[str, Any], *operations: dict[str, Any], limits: PatchLimits | None = None) -> Any:
    return apply_patch(USER, state, _operations(*operations), read_only={}, limits=limits or PatchLimits())


def test_values_that_are_not_e_mails_are_refused_before_any_is_compared() -> None:
    junk = [CountedJunk() for _ in range(2000)]
    with pytest.raises(ScimError) as refused:
        _patch({"userName": "u"}, {"op": "add", "path": "emails", "value": junk})
    assert refused.value.status == 400
    assert "emails[0]" in refused.value.detail
    assert Counter.comparisons == 0


def test_adding_many_values_compares_them_a_linear_number_of_times() -> None:
    added = [CountedEmail(value=f"user{index}@example.com") for index in range(2000)]
    result = _patch({"userName": "u"}, {"op": "add", "path": "emails", "value": [*added, *added[:10]]})
    assert [email["value"] for email in result["emails"]] == [email["value"] for email in added]
    assert Counter.comparisons <= 2 * len(added)


def test_many_operations_each_adding_a_value_compare_a_linear_number_of_times() -> None:
    operations = [
        {"op": "add", "path": "emails", "value": CountedEmail(value=f"user{index}@example.com")}
        for index in range(400)
    ]
    result = _patch({"userName": "u"}, *operations)
    assert len(result["emails"]) == 400
    assert Counter.comparisons <= 2 * len(operations)


def test_equal_values_spelled_differently_are_added_once() -> None:
    result = _patch(
        {"userName": "u", "emails": [{"value": "a@example.com", "primary": True}]},
        {"op": "add", "path": "emails", "value": [{"primary": "True", "VALUE": "a@example.com"}]},
    )
    assert result["emails"] == [{"value": "a@example.com", "primary": True}]


def test_filters_that_would_examine_more_values_than_the_budget_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    examined = 0
    real_matches = scim.patch.matches

    def counting_matches(*arguments: Any) -> bool:
        nonlocal examined
        examined += 1
        return real_matches(*arguments)

    monkeypatch.setattr(scim.patch, "matches", counting_matches)
    state = {"userName": "u", "emails": [{"value": f"u{index}@example.com"} for index in range(200)]}
    operations = [
        {"op": "replace", "path": f'emails[value eq "u{index}@example.com"].type', "value": "work"}
        for index in range(200)
    ]
    with pytest.raises(ScimError) as refused:
        _patch(state, *operations, limits=PatchLimits(max_comparisons=5_000))
    assert (refused.value.status, refused.value.scim_type) == (400, "tooMany")
    assert "5,000" in refused.value.detail
    assert examined <= 5_000 + 200


def test_sub_attribute_operations_over_many_values_count_against_the_budget() -> None:
    state = {"userName": "u", "emails": [{"value": f"u{index}@example.com"} for index in range(200)]}
    operations = [{"op": "replace", "path": "emails.display", "value": f"d{index}"} for index in range(200)]
    with pytest.raises(ScimError) as refused:
        _patch(state, *operations, limits=PatchLimits(max_comparisons=5_000))
    assert refused.value.scim_type == "tooMany"
    assert _patch(state, *operations[:10], limits=PatchLimits(max_comparisons=5_000))["emails"][0] == {
        "value": "u0@example.com",
        "display": "d9",
    }


def test_a_filter_naming_many_members_is_read_in_linear_time() -> None:
    ids = [f"00000000-0000-0000-0000-{index:012d}" for index in range(70)]
    path = "members[" + " or ".join(f'value eq "{member}"' for member in ids) + "]"
    change = plan_patch(_operations({"op": "remove", "path": path}))
    assert change.steps[0].kind == "remove"
    assert list(change.steps[0].ids) == ids
