"""A filter as a tree (RFC 7644 §3.4.2.2), and a PATCH path (§3.5.2): the nodes the parsers of scim/filter.py
build, how each prints back to filter text, and the walks every reader of a filter shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeAlias

import msgspec

Value: TypeAlias = str | int | float | bool | None


class AttrPath(msgspec.Struct, frozen=True):
    schema: str | None
    name: str
    sub: str | None = None

    def __str__(self) -> str:
        dotted = self.name if self.sub is None else f"{self.name}.{self.sub}"
        return f"{self.schema}:{dotted}" if self.schema else dotted


class Compare(msgspec.Struct, frozen=True):
    path: AttrPath
    op: str
    value: Value

    def __str__(self) -> str:
        return f"{self.path} {self.op} {_literal(self.value)}"


class Present(msgspec.Struct, frozen=True):
    path: AttrPath

    def __str__(self) -> str:
        return f"{self.path} pr"


class And(msgspec.Struct, frozen=True):
    left: Filter
    right: Filter

    def __str__(self) -> str:
        return _printed(self)


class Or(msgspec.Struct, frozen=True):
    left: Filter
    right: Filter

    def __str__(self) -> str:
        return _printed(self)


class Not(msgspec.Struct, frozen=True):
    inner: Filter

    def __str__(self) -> str:
        return _printed(self)


class ValuePath(msgspec.Struct, frozen=True):
    """`emails[type eq "work"]`: true when some value of a multi-valued attribute matches the inner filter,
    whose paths are relative to that attribute."""

    path: AttrPath
    filter: Filter

    def __str__(self) -> str:
        return _printed(self)


Filter: TypeAlias = Compare | Present | And | Or | Not | ValuePath


def _printed(tree: Filter) -> str:
    """The filter text of `tree`, printed with a stack of its own rather than by recursion: a chain of n
    `or`s is a tree n deep, and the length limit admits chains deeper than Python's recursion limit."""
    printed: list[str] = []  # the texts of the subtrees printed so far, left before right
    pending: list[tuple[Filter, bool]] = [(tree, False)]
    while pending:
        node, children_printed = pending.pop()
        if isinstance(node, Compare | Present):
            printed.append(str(node))
        elif not children_printed:
            pending.append((node, True))
            if isinstance(node, And | Or):
                pending += ((node.right, False), (node.left, False))
            else:
                pending.append((node.inner if isinstance(node, Not) else node.filter, False))
        elif isinstance(node, And | Or):
            right = printed.pop()
            printed.append(f"({printed.pop()} {'and' if isinstance(node, And) else 'or'} {right})")
        elif isinstance(node, Not):
            printed.append(f"not ({printed.pop()})")
        else:
            printed.append(f"{node.path}[{printed.pop()}]")
    return printed[0]


def leaves(tree: Filter) -> Iterator[Compare | Present | ValuePath]:
    """The comparisons of a filter, a value filter counting as one. Iterative: a filter may be long."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, And | Or):
            pending += (node.right, node.left)
        elif isinstance(node, Not):
            pending.append(node.inner)
        else:
            yield node


def _on_unassigned(leaf: Compare | Present | ValuePath) -> bool:
    """What a comparison is on a resource without the attribute, as the SQL compiler decides it for an absent
    value: `ne "x"` and `eq null` hold, everything else does not."""
    if isinstance(leaf, Compare):
        return (leaf.op == "ne") != (leaf.value is None)
    return False


def restrict(tree: Filter, has: Callable[[AttrPath], bool]) -> Filter | bool:
    """`tree` for a resource type that has only the attributes `has` accepts: a comparison on one it lacks is
    decided as on an unassigned attribute, and the filter is simplified around it, to True or False when
    nothing of it is left to ask. The root `/.search` filters Users and Groups with one filter this way.
    Iterative, as `_printed` is."""
    done: list[Filter | bool] = []
    pending: list[tuple[Filter, bool]] = [(tree, False)]
    while pending:
        node, children_done = pending.pop()
        if isinstance(node, Compare | Present | ValuePath):
            done.append(node if has(node.path) else _on_unassigned(node))
        elif not children_done:
            pending.append((node, True))
            if isinstance(node, And | Or):
                pending += ((node.right, False), (node.left, False))
            else:
                pending.append((node.inner, False))
        elif isinstance(node, Not):
            inner = done.pop()
            done.append((not inner) if isinstance(inner, bool) else Not(inner))
        else:
            right, left = done.pop(), done.pop()
            done.append(_combined(node, left, right))
    return done[0]


def _combined(node: And | Or, left: Filter | bool, right: Filter | bool) -> Filter | bool:
    absorbing = isinstance(node, Or)  # True absorbs an `or`, False an `and`
    if isinstance(left, bool) or isinstance(right, bool):
        if left is absorbing or right is absorbing:
            return absorbing
        # The constant one is neutral: what is left is the other side, constant or not.
        return right if isinstance(left, bool) else left
    return type(node)(left, right)


class PatchPath(msgspec.Struct, frozen=True):
    """`attrPath`, `attrPath[valFilter]` or `attrPath[valFilter].subAttr`."""

    attribute: AttrPath
    value_filter: Filter | None = None
    sub: str | None = None

    def __str__(self) -> str:
        text = str(self.attribute)
        if self.value_filter is not None:
            text += f"[{self.value_filter}]"
        if self.sub is not None:
            text += f".{self.sub}"
        return text


def _literal(value: Value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return msgspec.json.encode(value).decode()
