"""RFC 7643's metamodel: attributes and schemas as data, and the attributes every resource has.

One definition serves every consumer: /Schemas renders it, request bodies are validated by msgspec
structs generated from it (scim/resource_type.py), filters and PATCH paths resolve attribute names against
it (names are case-insensitive, RFC 7643 §2.1), and the SQL compiler reads each attribute's type and
caseExact. The User and Group schemas themselves are in scim/core_schemas.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# RFC 7643 §7's values of an attribute's `mutability`.
Mutability = Literal["readWrite", "readOnly", "writeOnly", "immutable"]


READ_WRITE: Mutability = "readWrite"


READ_ONLY: Mutability = "readOnly"


WRITE_ONLY: Mutability = "writeOnly"


IMMUTABLE: Mutability = "immutable"


# The client's identifiers of a resource, which the database indexes: a btree entry cannot exceed about 2,700
# bytes, and 600 characters of up to 4 bytes each (lowercased or not) stay below it.
IDENTIFIERS = ("userName", "externalId")


MAX_IDENTIFIER_LENGTH = 512


IDENTIFIER_LENGTH_CEILING = 600


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    type: str = "string"
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: Mutability = READ_WRITE
    returned: str = "default"
    uniqueness: str = "none"
    description: str = ""
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()
    _subs_by_name: Mapping[str, Attribute] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_subs_by_name", _by_name(self.sub_attributes))

    def sub(self, name: str) -> Attribute | None:
        return self._subs_by_name.get(name.lower())

    @property
    def stored(self) -> bool:
        """Whether a client-sent value is kept: readOnly values are the server's, writeOnly ones secrets."""
        return self.mutability not in (READ_ONLY, WRITE_ONLY)

    def to_scim(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        }
        if self.type != "complex":
            rendered["caseExact"] = self.case_exact
            rendered["uniqueness"] = self.uniqueness
        if self.canonical_values:
            rendered["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            rendered["referenceTypes"] = list(self.reference_types)
        if self.sub_attributes:
            rendered["subAttributes"] = [sub.to_scim() for sub in self.sub_attributes]
        return rendered


def _by_name(attributes: Iterable[Attribute]) -> dict[str, Attribute]:
    """Attributes by lowercased name: names are case-insensitive (RFC 7643 §2.1), and looked up for every
    attribute of every request, so each set of them is indexed once, as the schema is built."""
    return {attribute.name.lower(): attribute for attribute in attributes}


@dataclass(frozen=True, slots=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    _attributes_by_name: Mapping[str, Attribute] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_attributes_by_name", _by_name(self.attributes))

    def attribute(self, name: str) -> Attribute | None:
        return self._attributes_by_name.get(name.lower())

    def to_scim(self, location: str) -> dict[str, Any]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [attribute.to_scim() for attribute in self.attributes],
            "meta": {"resourceType": "Schema", "location": location},
        }


def multi_valued(
    name: str,
    description: str,
    types: tuple[str, ...],
    value_type: str = "string",
    reference_types: tuple[str, ...] = (),
) -> Attribute:
    return Attribute(
        name,
        "complex",
        multi_valued=True,
        description=description,
        sub_attributes=(
            Attribute(
                "value", value_type, reference_types=reference_types, description=f"{description} value."
            ),
            Attribute("display", description="A human-readable name, primarily used for display purposes."),
            Attribute(
                "type", canonical_values=types, description="A label indicating the attribute's function."
            ),
            Attribute("primary", "boolean", description="Indicates the primary or preferred value."),
        ),
    )


# RFC 7643 §3.1: attributes every resource has, outside any schema's attribute list.
ID = Attribute(
    "id",
    case_exact=True,
    mutability=READ_ONLY,
    returned="always",
    uniqueness="server",
    description="Unique identifier for the resource, assigned by the service provider.",
)


EXTERNAL_ID = Attribute(
    "externalId",
    case_exact=True,
    description="Identifier of the resource as defined by the provisioning client.",
)


META = Attribute(
    "meta",
    "complex",
    mutability=READ_ONLY,
    description="Resource metadata.",
    sub_attributes=(
        Attribute("resourceType", case_exact=True, mutability=READ_ONLY),
        Attribute("created", "dateTime", mutability=READ_ONLY),
        Attribute("lastModified", "dateTime", mutability=READ_ONLY),
        Attribute("location", "reference", mutability=READ_ONLY, reference_types=("uri",)),
        Attribute("version", case_exact=True, mutability=READ_ONLY),
    ),
)


COMMON_ATTRIBUTES = (ID, EXTERNAL_ID, META)


COMMON_BY_NAME = _by_name(COMMON_ATTRIBUTES)
