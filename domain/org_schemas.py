"""An organization's own extension schemas of the User resource, declared by its admin.

Each URN an organization declares is a stream of its own: the first declaration creates it, each later one
replaces the declaration and is a new version. The log keeps every declaration, and users' events keep the
values that were sent under them, so declaring again never rewrites history.

Because stored profiles keep values sent under every earlier declaration, a redeclaration may not change the
shape of any attribute ever declared under the URN (its type, whether it is multi-valued, its sub-attributes'
types), nor make a value required that stored profiles may lack: either would leave stored values that no
longer validate, and a deactivation or a filter would fail on them.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, event

from domain.errors import IncompatibleRedeclaration

_SCHEMA_NAMESPACE = uuid.UUID("0b9e4c52-7d1a-4f36-a8e5-2c6d9f3b1e70")


def schema_id_for(org_id: str, urn: str) -> uuid.UUID:
    """An org declares a URN once and then replaces it, so the stream's id is derived from the pair; URNs
    compare ignoring case, as SCIM compares schema URNs."""
    return uuid.uuid5(_SCHEMA_NAMESPACE, f"{org_id}:{urn.lower()}")


# What a stored value's validity depends on: the attribute's type, whether it is multi-valued, and the same of
# each sub-attribute, by name folded to lower case (attribute names compare ignoring case, RFC 7643 §2.1).
Shape = tuple[str, bool, dict[str, tuple[str, bool]]]


def _shapes(declaration: dict[str, Any]) -> dict[str, Shape]:
    return {
        attribute["name"].lower(): (
            attribute["type"],
            attribute["multiValued"],
            {sub["name"].lower(): (sub["type"], sub["multiValued"]) for sub in attribute["subAttributes"]},
        )
        for attribute in declaration["attributes"]
    }


def _required(declaration: dict[str, Any]) -> set[str]:
    return {attribute["name"].lower() for attribute in declaration["attributes"] if attribute["required"]}


def _described(shape: tuple[str, bool]) -> str:
    kind, multi_valued = shape
    return f"a multi-valued {kind}" if multi_valued else f"a single {kind}"


class OrgSchema(Aggregate):
    TOPIC: ClassVar[str] = "OrgSchema"

    class Created(Aggregate.Created):
        """Never recorded: the library defines a generic creation event on every aggregate, and an aggregate
        with explicit topics must name it too. Schemas are created by Declared."""

        TOPIC: ClassVar[str] = "OrgSchemaCreated"

    class Declared(Aggregate.Created):
        """`declaration`: the schema in RFC 7643 §7's format, every field spelled out."""

        TOPIC: ClassVar[str] = "OrgSchemaDeclared"
        org_id: str
        urn: str
        declaration: dict[str, Any]

    class Redeclared(Aggregate.Event):
        TOPIC: ClassVar[str] = "OrgSchemaRedeclared"
        declaration: dict[str, Any]

    @staticmethod
    def create_id(org_id: str, urn: str, declaration: dict[str, Any]) -> uuid.UUID:
        return schema_id_for(org_id, urn)

    @event(Declared)
    def __init__(self, org_id: str, urn: str, declaration: dict[str, Any]) -> None:
        self.org_id = org_id
        self.urn = urn
        self.declaration = declaration
        # Every attribute ever declared under the URN, with its first shape: derived from the events, so an
        # attribute dropped and declared again is compared with what stored profiles may still hold.
        self.shapes_ever: dict[str, Shape] = _shapes(declaration)

    def declare(self, declaration: dict[str, Any]) -> None:
        """Replace the declaration; declaring the same one again records nothing. Refuses, naming the
        attribute, a change that values stored under an earlier declaration could not satisfy."""
        if declaration["id"] != self.urn:
            raise IncompatibleRedeclaration(
                f"The schema '{declaration['id']}' is already declared as '{self.urn}': schema URNs compare "
                f"ignoring case, and stored profiles keep the first spelling. Declare it as '{self.urn}'."
            )
        self._check_compatible(declaration)
        if declaration != self.declaration:
            self._redeclare(declaration)

    def _check_compatible(self, declaration: dict[str, Any]) -> None:
        instead = "declare a new attribute name for the new shape instead"
        spelled = {attribute["name"].lower(): attribute["name"] for attribute in declaration["attributes"]}
        for folded, (kind, multi_valued, subs) in _shapes(declaration).items():
            before, name = self.shapes_ever.get(folded), spelled[folded]
            if before is None:
                continue
            if (kind, multi_valued) != before[:2]:
                raise IncompatibleRedeclaration(
                    f"Attribute '{name}' of '{self.urn}' was declared as {_described(before[:2])}; it cannot "
                    f"become {_described((kind, multi_valued))}, since stored profiles may hold values of the "
                    f"old shape: {instead}."
                )
            for sub_name, sub_shape in subs.items():
                sub_before = before[2].get(sub_name)
                if sub_before is not None and sub_before != sub_shape:
                    raise IncompatibleRedeclaration(
                        f"Attribute '{name}.{sub_name}' of '{self.urn}' was declared as "
                        f"{_described(sub_before)}; it cannot become {_described(sub_shape)}, since stored "
                        f"profiles may hold values of the old shape: {instead}."
                    )
        newly_required = sorted(_required(declaration) - _required(self.declaration))
        if newly_required:
            raise IncompatibleRedeclaration(
                f"Attribute '{spelled[newly_required[0]]}' of '{self.urn}' cannot become required now: users already "
                "provisioned may lack it, and the identity provider's next write to them (a deactivation "
                "included) would be refused. Declare it not required."
            )

    @event(Redeclared)
    def _redeclare(self, declaration: dict[str, Any]) -> None:
        # The URN keeps its first spelling (see `declare`); an event recorded before that rule held may
        # carry another spelling, which replays without changing it.
        self.declaration = {**declaration, "id": self.urn}
        for name, (kind, multi_valued, subs) in _shapes(declaration).items():
            known = self.shapes_ever.setdefault(name, (kind, multi_valued, {}))
            for sub_name, sub_shape in subs.items():
                known[2].setdefault(sub_name, sub_shape)


EVENT_TYPES: tuple[type[Aggregate.Event], ...] = (OrgSchema.Declared, OrgSchema.Redeclared)
EVENT_TYPE_NAMES: tuple[str, ...] = tuple(event_type.TOPIC for event_type in EVENT_TYPES)  # type: ignore[attr-defined]
