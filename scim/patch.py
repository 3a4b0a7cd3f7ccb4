"""RFC 7644 §3.5.2 PATCH, applied to a resource's canonical attribute dictionary.

What real clients send shaped these rules as much as the RFC did:
- Okta deactivates with a pathless `{"op": "replace", "value": {"active": false}}`.
- Entra capitalises op names ("Replace"), sends booleans as strings, puts dotted and URN-qualified
  paths as keys of a pathless value (`{"name.givenName": "x"}`), and adds `emails[type eq "work"].value`
  when the user has no work e-mail yet: such an equality filter creates the value it describes.
- Removing a value that is not there is a no-op, as is adding one that already is.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from scim.errors import invalid_path, invalid_value, mutability, no_target, too_many
from scim.filter import parse_patch_path
from scim.filter_tree import And, AttrPath, Compare, Filter, Not, Or, PatchPath, Present, ValuePath, leaves
from scim.folding import fold
from scim.patch_request import PatchOperation
from scim.resource_type import Resolved, ResourceType, validate_values
from scim.schema import MAX_IDENTIFIER_LENGTH, READ_ONLY, Attribute, Schema

_ORDERINGS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


# How many values one PATCH may examine: every value an operation scans or compares counts one, times the
# terms of the filter it is compared with. A request is otherwise linear in its size, but each operation
# that scans a multi-valued attribute costs as many values as the attribute holds, which earlier
# operations of the same request can grow: thousands of them over thousands of values held the event
# loop for seconds. Far above what an identity provider's PATCH examines (a few values per operation).
MAX_PATCH_COMPARISONS = 200_000


@dataclass(frozen=True)
class PatchLimits:
    max_comparisons: int = MAX_PATCH_COMPARISONS
    max_identifier_length: int = MAX_IDENTIFIER_LENGTH


DEFAULT_LIMITS = PatchLimits()


@dataclass
class Budget:
    """The comparisons a request has left; spent before the work it pays for, so a refused request did none."""

    limit: int
    spent: int = 0

    def spend(self, comparisons: int) -> None:
        self.spent += comparisons
        if self.spent > self.limit:
            raise too_many(
                f"This PATCH would examine more than {self.limit:,} attribute values (each operation scans the "
                "values it filters or changes). Send its operations in several smaller requests."
            )


@dataclass
class Patcher:
    """Applies operations to a copy of `current`; `read_only` holds the server-owned values (such as id) that
    a client may echo back unchanged, as Okta does, but never change."""

    resource_type: ResourceType
    current: Mapping[str, Any]
    read_only: Mapping[str, Any]
    budget: Budget = field(default_factory=lambda: Budget(MAX_PATCH_COMPARISONS))

    def apply(self, operations: Sequence[PatchOperation]) -> dict[str, Any]:
        # A copy the operations may change in place; a JSON round trip copies a stored resource (JSON itself)
        # several times faster than copy.deepcopy.
        document: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self.current))
        for operation in operations:
            if operation.path is None:
                self._apply_pathless(document, operation)
            else:
                self._apply_path(document, operation.op, operation.path, operation.value)
        return document

    def _apply_pathless(self, document: dict[str, Any], operation: PatchOperation) -> None:
        if not isinstance(operation.value, dict):
            raise invalid_value(
                f"A {operation.op} without a path needs an object of attributes as its value."
            )
        for key, value in _attributes_of(operation.value):
            # Keys are paths, the extension's URN among them (`{"urn:…:enterprise:2.0:User": {…}}`, as Entra
            # sends it): `_apply_path` tells them apart.
            self._apply_path(document, operation.op, parse_patch_path(key), value)

    def _resolve(self, path: PatchPath) -> Resolved:
        attribute = path.attribute
        resolved = self.resource_type.resolve(attribute.schema, attribute.name, attribute.sub)
        if resolved is None:
            raise invalid_path(f"'{path}' is not an attribute of {self.resource_type.name}.")
        if path.sub is not None and resolved.attribute.sub(path.sub) is None:
            raise invalid_path(f"'{path}': {resolved.attribute.name} has no sub-attribute '{path.sub}'.")
        return resolved

    def _apply_path(self, document: dict[str, Any], op: str, path: PatchPath, value: Any) -> None:
        if path.value_filter is None and path.attribute.sub is None:
            extension = self.resource_type.extension_at(path.attribute.schema, path.attribute.name)
            if extension is not None:
                self._apply_extension(document, op, extension, value)
                return
        resolved = self._resolve(path)
        attribute = resolved.attribute
        if attribute.mutability == READ_ONLY or (
            resolved.sub_attribute and resolved.sub_attribute.mutability == READ_ONLY
        ):
            self._check_read_only(resolved, op, value)
            return
        if not attribute.stored:
            return  # writeOnly, such as password: accepted, never kept
        container = document
        if resolved.extension is not None:
            container = document.setdefault(resolved.extension, {})
        if path.value_filter is not None:
            if not attribute.multi_valued:
                raise invalid_path(f"'{path}': only a multi-valued attribute takes a value filter.")
            self._apply_filtered(container, op, attribute, path.value_filter, path.sub, value, str(path))
        elif resolved.sub_attribute is not None:
            self._apply_sub_attribute(container, op, attribute, resolved.sub_attribute.name, value)
        else:
            self._apply_attribute(container, op, attribute, value)
        if resolved.extension is not None and not container:
            del document[resolved.extension]

    def _apply_extension(self, document: dict[str, Any], op: str, extension: Schema, value: Any) -> None:
        """A path that is an extension's URN targets all of its attributes at once: remove unassigns them all;
        add and replace merge the attributes given, as they do for a complex attribute (RFC 7644 §3.5.2.1,
        §3.5.2.3), leaving the others as they were."""
        if op == "remove" or value is None:
            document.pop(extension.id, None)
            return
        if not isinstance(value, dict):
            raise invalid_value(
                f"The value of '{extension.id}' must be an object of its attributes, such as "
                '{"department": "Sales"}.'
            )
        for name, item in _attributes_of(value):
            self._apply_path(document, op, PatchPath(AttrPath(extension.id, name)), item)

    def _check_read_only(self, resolved: Resolved, op: str, value: Any) -> None:
        current = self.read_only.get(resolved.dotted())
        if op != "remove" and current is not None and value == current:
            return  # echoing the server's own value back, as Okta does with id
        raise mutability(f"'{resolved.dotted()}' is read-only and cannot be changed.")

    def _apply_attribute(self, container: dict[str, Any], op: str, attribute: Attribute, value: Any) -> None:
        name = attribute.name
        if op == "remove":
            container.pop(name, None)
            return
        if value is None:
            container.pop(name, None)  # null means unassigned (RFC 7643 §2.5)
            return
        if attribute.multi_valued:
            # Checked first: a value that is no value of this attribute is refused before any is compared.
            values = validate_values(attribute, value if isinstance(value, list) else [value])
            existing = container.get(name, []) if op == "add" else []
            self.budget.spend(len(existing))
            merged = list(existing)
            # Adding a value already there adds nothing; values are compared by their canonical JSON, hashed,
            # so that adding n values costs n steps, not n² comparisons.
            held = {_identity(item): item for item in merged}
            touched = []
            for item in values:
                key = _identity(item)
                kept = held.get(key)
                if kept is None:
                    held[key] = kept = item
                    merged.append(item)
                touched.append(kept)  # the value as held, so that re-adding the primary one keeps it primary
            container[name] = merged
            _settle_primary(merged, touched=touched)
        elif attribute.type == "complex" and isinstance(value, dict):
            # Both add and replace merge the given sub-attributes into a complex value (§3.5.2.1, §3.5.2.3).
            merged_complex = dict(container.get(name) or {})
            for key, item in value.items():
                sub = attribute.sub(key)
                if sub is None:
                    continue
                if item is None:
                    merged_complex.pop(sub.name, None)
                else:
                    merged_complex[sub.name] = item
            container[name] = merged_complex
        else:
            container[name] = value

    def _apply_sub_attribute(
        self, container: dict[str, Any], op: str, attribute: Attribute, sub: str, value: Any
    ) -> None:
        name = attribute.name
        if attribute.multi_valued:
            targets = container.get(name) or []
            self.budget.spend(len(targets))
            if not targets and op != "remove":
                container[name] = [{sub: value}]
                return
            for element in targets:
                _set_or_remove(element, sub, None if op == "remove" else value)
            container[name] = [element for element in targets if element]
            if not container[name]:
                del container[name]
            return
        complex_value = dict(container.get(name) or {})
        _set_or_remove(complex_value, sub, None if op == "remove" else value)
        if complex_value:
            container[name] = complex_value
        else:
            container.pop(name, None)

    def _apply_filtered(
        self,
        container: dict[str, Any],
        op: str,
        attribute: Attribute,
        value_filter: Filter,
        sub: str | None,
        value: Any,
        path_text: str,
    ) -> None:
        name = attribute.name
        elements: list[Any] = list(container.get(name) or [])
        self.budget.spend(len(elements) * filter_size(value_filter))
        matched = [
            index for index, element in enumerate(elements) if matches(value_filter, element, attribute)
        ]
        if op == "remove":
            if sub is None:
                kept = set(range(len(elements))).difference(matched)
                elements = [element for index, element in enumerate(elements) if index in kept]
            else:
                for index in matched:
                    elements[index].pop(_canonical_sub(attribute, sub), None)
                elements = [element for element in elements if element]
        elif not matched:
            created = _element_described_by(value_filter, attribute)
            if created is None:
                raise no_target(f"No value matches '{path_text}'.")
            if sub is not None:
                created[_canonical_sub(attribute, sub)] = value
            elif isinstance(value, dict):
                created.update(value)
            else:
                raise invalid_value(f"'{path_text}' needs an object as its value.")
            elements.append(created)
            _settle_primary(elements, touched=[created])
        else:
            touched = []
            for index in matched:
                if sub is not None:
                    elements[index] = {**elements[index], _canonical_sub(attribute, sub): value}
                elif isinstance(value, dict):
                    elements[index] = dict(value) if op == "replace" else {**elements[index], **value}
                else:
                    raise invalid_value(f"'{path_text}' needs an object as its value.")
                touched.append(elements[index])
            _settle_primary(elements, touched=touched)
        if elements:
            container[name] = elements
        else:
            container.pop(name, None)


def _attributes_of(value: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The attributes of an object a client sent as a value; its `schemas`, which clients such as scim2-tester
    put in an extension's object too, names schemas rather than an attribute."""
    return ((key, item) for key, item in value.items() if key.lower() != "schemas")


def _identity(value: Any) -> bytes:
    """A hashable key equal for equal values, whatever the order of their keys."""
    return msgspec.json.encode(value, order="sorted")


def filter_size(value_filter: Filter) -> int:
    """The comparisons a filter makes on each value it is matched against."""
    return sum(1 for _ in leaves(value_filter))


def _set_or_remove(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def _canonical_sub(attribute: Attribute, name: str) -> str:
    sub = attribute.sub(name)
    if sub is None:
        raise invalid_path(f"{attribute.name} has no sub-attribute '{name}'.")
    return sub.name


def _settle_primary(elements: list[Any], touched: Sequence[Any]) -> None:
    """RFC 7643 §2.4: at most one value is primary; the one just written wins."""
    winner = next(
        (item for item in reversed(touched) if isinstance(item, dict) and _truthy(item.get("primary"))), None
    )
    if winner is None:
        return
    for element in elements:
        if element is not winner and isinstance(element, dict) and _truthy(element.get("primary")):
            element["primary"] = False


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _element_described_by(value_filter: Filter, attribute: Attribute) -> dict[str, Any] | None:
    """For `type eq "work" [and ...]`, the value that filter describes; None for any other filter."""
    if isinstance(value_filter, Compare) and value_filter.op == "eq" and value_filter.value is not None:
        sub = attribute.sub(value_filter.path.name)
        return {sub.name: value_filter.value} if sub is not None and value_filter.path.sub is None else None
    if isinstance(value_filter, And):
        left = _element_described_by(value_filter.left, attribute)
        right = _element_described_by(value_filter.right, attribute)
        return {**left, **right} if left is not None and right is not None else None
    return None


def matches(value_filter: Filter, element: Any, attribute: Attribute) -> bool:
    if isinstance(value_filter, And):
        return matches(value_filter.left, element, attribute) and matches(
            value_filter.right, element, attribute
        )
    if isinstance(value_filter, Or):
        return matches(value_filter.left, element, attribute) or matches(
            value_filter.right, element, attribute
        )
    if isinstance(value_filter, Not):
        return not matches(value_filter.inner, element, attribute)
    if isinstance(value_filter, ValuePath):
        raise invalid_path("A value filter cannot be nested inside another value filter.")
    sub = attribute.sub(value_filter.path.name)
    if sub is None or value_filter.path.sub is not None:
        raise invalid_path(f"{attribute.name} has no sub-attribute '{value_filter.path}'.")
    actual = element.get(sub.name) if isinstance(element, dict) else None
    if isinstance(value_filter, Present):
        return actual not in (None, "", [])
    return compare(value_filter.op, actual, value_filter.value, sub)


def compare(op: str, actual: Any, expected: Any, attribute: Attribute) -> bool:
    """One comparison with SCIM semantics: strings ignore case unless the attribute is caseExact."""
    if actual is None or expected is None:
        equal = actual is None and expected is None
        return equal if op == "eq" else (not equal if op == "ne" else False)
    if isinstance(actual, str) and isinstance(expected, str):
        if attribute.type == "boolean":
            actual, expected = actual.lower(), expected.lower()
        elif not attribute.case_exact:
            actual, expected = fold(actual), fold(expected)
    elif isinstance(actual, bool) and isinstance(expected, str):
        expected = expected.lower() == "true"
    try:
        if op == "eq":
            return bool(actual == expected)
        if op == "ne":
            return bool(actual != expected)
        if op == "co":
            return isinstance(actual, str) and isinstance(expected, str) and expected in actual
        if op == "sw":
            return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)
        if op == "ew":
            return isinstance(actual, str) and isinstance(expected, str) and actual.endswith(expected)
        if isinstance(actual, bool) or isinstance(expected, bool):
            raise invalid_value(f"'{op}' does not apply to the boolean {attribute.name}.")
        return bool(_ORDERINGS[op](actual, expected))
    except TypeError as error:
        raise invalid_value(f"'{op}' cannot compare {attribute.name} with {expected!r}.") from error


def apply_patch(
    resource_type: ResourceType,
    current: Mapping[str, Any],
    operations: Sequence[PatchOperation],
    read_only: Mapping[str, Any],
    limits: PatchLimits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """The validated attributes after applying `operations`; all or nothing, since `current` is not touched."""
    patched = Patcher(resource_type, current, read_only, Budget(limits.max_comparisons)).apply(operations)
    if all(
        patched.get(key) == current.get(key) for key in patched.keys() | current.keys() if key != "active"
    ):
        # Only `active` changes: Okta's and Entra's deactivation or reactivation. Extension values were valid
        # when stored, perhaps under an earlier declaration of the org's schema; checking them again could
        # refuse a deactivation over a value the identity provider's admin cannot see. They stay as stored.
        stored = {key: value for key, value in patched.items() if key[:4].lower() == "urn:"}
        core = {key: value for key, value in patched.items() if key not in stored}
        return {**resource_type.validate(core, limits.max_identifier_length), **stored}
    return resource_type.validate(patched, limits.max_identifier_length)
