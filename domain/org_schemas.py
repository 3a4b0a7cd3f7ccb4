"""An organization's own extension schemas of the User resource, declared by its admin.

Each URN an organization declares is a stream of its own: the first declaration creates it, each later one
replaces the declaration and is a new version. The log keeps every declaration, and users' events keep the
values that were sent under them, so declaring again never rewrites history.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, event

_SCHEMA_NAMESPACE = uuid.UUID("0b9e4c52-7d1a-4f36-a8e5-2c6d9f3b1e70")


def schema_id_for(org_id: str, urn: str) -> uuid.UUID:
    """An org declares a URN once and then replaces it, so the stream's id is derived from the pair; URNs
    compare ignoring case, as SCIM compares schema URNs."""
    return uuid.uuid5(_SCHEMA_NAMESPACE, f"{org_id}:{urn.lower()}")


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

    def declare(self, declaration: dict[str, Any]) -> None:
        """Replace the declaration; declaring the same one again records nothing."""
        if declaration != self.declaration:
            self._redeclare(declaration)

    @event(Redeclared)
    def _redeclare(self, declaration: dict[str, Any]) -> None:
        self.urn = declaration.get("id", self.urn)
        self.declaration = declaration


EVENT_TYPES: tuple[type[Aggregate.Event], ...] = (OrgSchema.Declared, OrgSchema.Redeclared)
EVENT_TYPE_NAMES: tuple[str, ...] = tuple(event_type.TOPIC for event_type in EVENT_TYPES)  # type: ignore[attr-defined]
