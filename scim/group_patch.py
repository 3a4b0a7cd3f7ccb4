"""PATCH and PUT of a Project × Role group, as membership steps.

The generic PATCH engine rewrites a resource's whole attribute document, which for a group means its whole
member list. Here operations become steps (add these ids, remove those, replace all), so that adding one
member to a group of 10,000 touches one membership. displayName and id may be sent, as Okta does after every
membership change, but only with their current values: groups are named in the app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from scim.core_schemas import GROUP
from scim.errors import ScimError, invalid_path, invalid_value, mutability
from scim.filter_tree import Compare, Filter, Or, PatchPath
from scim.folding import fold
from scim.patch_request import PatchOperation

RENAME_REFUSED = (
    "Groups are named after their project and role in the app and cannot be renamed through SCIM. "
    "In Okta, turn off 'Rename Groups' in the app's Push Groups settings."
)


class MembershipStep(msgspec.Struct, frozen=True):
    kind: Literal["add", "remove", "remove_all", "replace", "remove_matching"]
    ids: tuple[str, ...] = ()
    matching: Filter | None = None


@dataclass
class GroupChange:
    steps: list[MembershipStep] = field(default_factory=list)
    display_names: list[str] = field(
        default_factory=list
    )  # asserted by the client; must equal the current one
    ids: list[str] = field(default_factory=list)  # echoed by the client; must equal the group's id
    # The `display` the client sent with each member id: the only name an unknown id can be told by.
    displays: dict[str, str] = field(default_factory=dict)

    def other_name(self, display_name: str) -> str | None:
        """The first displayName sent that is not `display_name`, if any: compared as displayName is, ignoring
        case (caseExact false, and group names are unique under the same folding)."""
        current = fold(display_name)
        return next((value for value in self.display_names if fold(value) != current), None)

    def check_identity(self, group_id: str, display_name: str) -> None:
        if any(value != group_id for value in self.ids):
            raise mutability("'id' is read-only and cannot be changed.")
        other = self.other_name(display_name)
        if other is not None:
            raise mutability(f"The group is named '{display_name}', not '{other}'. {RENAME_REFUSED}")


def renamed_in_app(sent: str, current: str, renamings: Sequence[str]) -> ScimError:
    """A push that carries the name the group had before the app renamed it: Okta's group still has it."""
    return mutability(
        f"The group '{sent}' is now '{current}': {'; '.join(renamings)}. Nothing in this request was applied. "
        f"In Okta, rename the pushed group to '{current}' so that its pushes carry the app's name, and keep "
        "'Rename Groups' turned off in the app's Push Groups settings: the app names its groups."
    )


def member_displays(value: Any) -> dict[str, str]:
    """The `display` sent with each member id in a members value (already checked by `member_ids`)."""
    items = value if isinstance(value, list) else [value]
    return {
        item["value"]: item["display"]
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("display"), str)
    }


def member_ids(value: Any) -> tuple[str, ...]:
    """The ids in a members value: a list of {"value": id, ...} objects, or one such object."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        member = item.get("value") if isinstance(item, Mapping) else None
        if not isinstance(member, str) or not member:
            raise invalid_value(f"Each member needs a 'value' holding a user id; got {item!r}.")
        ids.append(member)
    return tuple(ids)


def _ids_named_by(value_filter: Filter) -> tuple[str, ...] | None:
    """`value eq "a"`, or several joined by `or`: the ids it names, in order; None for any other filter.
    Walked with a stack of its own: a chain of n `or`s is a tree n deep, read in n steps."""
    ids: list[str] = []
    pending = [value_filter]
    while pending:
        node = pending.pop()
        if isinstance(node, Or):
            pending += (node.right, node.left)
        elif (
            isinstance(node, Compare)
            and node.op == "eq"
            and isinstance(node.value, str)
            and node.path.schema is None
            and node.path.sub is None
            and node.path.name.lower() == "value"
        ):
            ids.append(node.value)
        else:
            return None
    return tuple(ids)


def _members_step(op: str, path: PatchPath | None, value: Any) -> MembershipStep:
    if path is not None and path.sub is not None:
        raise invalid_path(
            f"'{path}': members are added or removed whole; their sub-attributes cannot be changed."
        )
    if path is not None and path.value_filter is not None:
        if op != "remove":
            raise invalid_path(
                f"'{path}': use 'add' to add members and 'remove' with a filter to remove them."
            )
        named = _ids_named_by(path.value_filter)
        if named is not None:
            return MembershipStep("remove", named)
        return MembershipStep("remove_matching", matching=path.value_filter)
    if op == "remove":
        return (
            MembershipStep("remove", member_ids(value)) if value is not None else MembershipStep("remove_all")
        )
    if value is None:
        return MembershipStep("remove_all") if op == "replace" else MembershipStep("add")
    return MembershipStep("add" if op == "add" else "replace", member_ids(value))


def _apply(change: GroupChange, op: str, name: str, path: PatchPath | None, value: Any) -> None:
    if value is msgspec.UNSET:
        value = None
    resolved = (
        GROUP.resolve(None, name) if name[:4].lower() != "urn:" else GROUP.resolve(*name.rsplit(":", 1))
    )
    if resolved is None:
        raise invalid_path(f"'{name}' is not an attribute of Group.")
    attribute = resolved.attribute.name
    if attribute == "members":
        change.steps.append(_members_step(op, path, value))
        if value is not None:
            change.displays.update(member_displays(value))
    elif attribute == "displayName":
        if op == "remove" or not isinstance(value, str):
            raise mutability(f"displayName cannot be removed or set to {value!r}. {RENAME_REFUSED}")
        change.display_names.append(value)
    elif attribute == "id":
        if op == "remove" or not isinstance(value, str):
            raise mutability("'id' is read-only and cannot be changed.")
        change.ids.append(value)
    # externalId and meta carry nothing the app keeps for groups.


def plan_patch(operations: Sequence[PatchOperation]) -> GroupChange:
    change = GroupChange()
    for operation in operations:
        if operation.path is None:
            if not isinstance(operation.value, dict):
                raise invalid_value(
                    f"A {operation.op} without a path needs an object of attributes as its value."
                )
            for key, value in operation.value.items():
                if key.lower() != "schemas":
                    _apply(change, operation.op, key, None, value)
        else:
            path = operation.path
            name = (
                f"{path.attribute.schema}:{path.attribute.name}"
                if path.attribute.schema
                else path.attribute.name
            )
            if path.attribute.sub is not None and path.value_filter is None:
                path = PatchPath(path.attribute, None, path.attribute.sub)
            _apply(change, operation.op, name, path, operation.value)
    return change


def plan_put(body: Mapping[str, Any]) -> GroupChange:
    """PUT replaces the membership; displayName is required and must be the current one."""
    attributes = GROUP.validate(body)
    change = GroupChange(display_names=[attributes["displayName"]])
    members = attributes.get("members", [])
    change.steps.append(MembershipStep("replace", member_ids(members)))
    change.displays.update(member_displays(members))
    return change
