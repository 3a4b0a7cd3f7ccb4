"""An organization's own extension of the User resource, declared in RFC 7643 §7's schema format.

An org admin declares the attributes their identity provider sends under a custom schema URN (Okta's
"External namespace", Entra's `urn:ietf:params:scim:schemas:extension:<name>:2.0:User`). The file is decoded
by msgspec into typed structs, then checked against what this service can honour; every refusal names the
attribute and what is wrong with it, for the admin who wrote the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

import msgspec

from scim.core_schemas import CORE_GROUP, CORE_USER, ENTERPRISE_USER
from scim.schema import READ_WRITE, Attribute, Mutability, Schema

TYPES = ("string", "boolean", "decimal", "integer", "dateTime", "reference", "binary", "complex")
# readOnly values are the server's and writeOnly ones are never kept (scim/schema.py's `stored`): an
# extension's attributes are the client's, and kept. immutable would promise a check that no write makes.
MUTABILITIES: tuple[Mutability, ...] = (READ_WRITE,)
# RFC 7643 §2.1: ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA.
_ATTRNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# RFC 8141's URN, narrowed to the characters a filter or PATCH path can carry (scim/filter.py reads a URN as
# letters, digits, '_', '.', '-' and ':'); the last colon separates the attribute's name from it.
_URN = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}(:[A-Za-z0-9_.-]+)+", re.IGNORECASE)
# URNs this service defines itself, or that RFC 7643/7644 reserve for their own schemas and messages.
_RESERVED = (CORE_USER, ENTERPRISE_USER, CORE_GROUP)
_RESERVED_PREFIXES = ("urn:ietf:params:scim:schemas:core:", "urn:ietf:params:scim:api:")
MAX_URN_LENGTH = 200
MAX_ATTRIBUTES = 100
# Longer names than any identity provider's; with a URN, still far inside a filter's and a path's limits.
MAX_NAME_LENGTH = 128


class InvalidDeclaration(ValueError):
    """A schema file this service cannot honour; the message says which attribute and why."""


class AttributeDeclaration(msgspec.Struct, rename="camel", omit_defaults=False):
    name: str
    type: str = "string"
    multi_valued: bool = False
    description: str = ""
    required: bool = False
    case_exact: bool = False
    mutability: str = READ_WRITE
    returned: str = "default"
    uniqueness: str = "none"
    canonical_values: list[str] = []
    reference_types: list[str] = []
    sub_attributes: list[AttributeDeclaration] = []
    # Not RFC 7643's: the attribute identifies a person, so its values are stored encrypted with the user's own
    # key and erased with it (README: *Personal data*). Absent (false) unless declared; omitted when absent, so
    # that declarations recorded before it compare equal to the same declaration sent again.
    personal: bool | msgspec.UnsetType = msgspec.UNSET


class SchemaDeclaration(msgspec.Struct, rename="camel", omit_defaults=False):
    """RFC 7643 §7's schema resource; `schemas` and `meta`, if the file has them, are ignored."""

    id: str
    attributes: list[AttributeDeclaration]
    name: str = ""
    description: str = ""

    @property
    def urn(self) -> str:
        return self.id


def parse_declaration(document: bytes) -> SchemaDeclaration:
    """Decode and check a schema file; raises InvalidDeclaration."""
    try:
        declaration = msgspec.json.decode(document, type=SchemaDeclaration)
    except msgspec.DecodeError as error:
        raise InvalidDeclaration(
            f"The schema file is not a valid RFC 7643 schema: {_where(error)}."
        ) from error
    except RecursionError as error:
        # subAttributes nested thousands deep: a schema has one level (RFC 7643 §2.4).
        raise InvalidDeclaration(
            "The schema file nests subAttributes too deeply; a schema has one level."
        ) from error
    check(declaration)
    return declaration


def declaration_of(stored: Any) -> SchemaDeclaration:
    """A declaration as recorded on the log (see `to_document`)."""
    return msgspec.convert(stored, SchemaDeclaration)


def to_document(declaration: SchemaDeclaration) -> dict[str, Any]:
    """The declaration in RFC 7643 §7's format, every field spelled out: what the log records."""
    document: dict[str, Any] = msgspec.to_builtins(declaration)
    return document


def _where(error: msgspec.DecodeError) -> str:
    problem, _, where = str(error).partition(" - at `")
    where = where.rstrip("`").removeprefix("$.").removeprefix("$")
    problem = problem.replace("`", "").lower()
    return f"{problem} at '{where}'" if where else problem


def check(declaration: SchemaDeclaration) -> None:
    urn = declaration.id
    if not _URN.fullmatch(urn) or len(urn) > MAX_URN_LENGTH:
        raise InvalidDeclaration(
            f"The schema id '{declaration.id}' is not a URN such as "
            "'urn:ietf:params:scim:schemas:extension:acme:2.0:User': letters, digits, '_', '.', '-' between "
            f"its colons, at most {MAX_URN_LENGTH} characters."
        )
    lowered = urn.lower()
    if lowered in (reserved.lower() for reserved in _RESERVED) or lowered.startswith(_RESERVED_PREFIXES):
        raise InvalidDeclaration(
            f"The schema id '{urn}' is one this service defines itself (the core User and Group schemas and the "
            "enterprise extension are built in): give your extension a URN of its own, such as "
            "'urn:ietf:params:scim:schemas:extension:acme:2.0:User'."
        )
    check_apart(urn, _RESERVED)
    if not declaration.attributes:
        raise InvalidDeclaration(f"The schema '{urn}' declares no attributes.")
    if len(declaration.attributes) > MAX_ATTRIBUTES:
        raise InvalidDeclaration(f"The schema '{urn}' declares more than {MAX_ATTRIBUTES} attributes.")
    _check_attributes(declaration.attributes, within="")


def check_apart(urn: str, others: Iterable[str]) -> None:
    """Refuse `urn` when it and one of `others` (the built-in schemas, the organization's other declarations)
    nest: in `urn:…:acme:2.0:User:desk`, the last colon would separate the attribute `desk` of
    `urn:…:acme:2.0:User` as well as name a schema, so a path or a filter could mean either."""
    lowered = urn.lower()
    for other in others:
        folded = other.lower()
        if folded != lowered and (folded.startswith(lowered + ":") or lowered.startswith(folded + ":")):
            raise InvalidDeclaration(
                f"The schema id '{urn}' and the schema '{other}' nest: one is the other followed by ':…', so "
                "'<URN>:<attribute>' could name an attribute of either. Give your extension a URN that neither "
                "starts with another schema's URN nor is the start of one."
            )


def _check_attributes(attributes: list[AttributeDeclaration], within: str) -> None:
    seen: dict[str, str] = {}
    for attribute in attributes:
        path = f"{within}{attribute.name}"
        if len(attribute.name) > MAX_NAME_LENGTH:
            raise InvalidDeclaration(
                f"Attribute '{path[:MAX_NAME_LENGTH]}…': a name is at most {MAX_NAME_LENGTH} characters."
            )
        if not _ATTRNAME.fullmatch(attribute.name):
            raise InvalidDeclaration(
                f"Attribute '{path}': a name starts with a letter and holds only letters, digits, '-' and '_' "
                "(RFC 7643 §2.1)."
            )
        folded = attribute.name.lower()
        if folded in seen:
            raise InvalidDeclaration(
                f"Attribute '{path}' is declared twice (as '{seen[folded]}' too): names are compared ignoring "
                "case (RFC 7643 §2.1)."
            )
        seen[folded] = attribute.name
        _check_attribute(attribute, path, nested=bool(within))


def _check_attribute(attribute: AttributeDeclaration, path: str, nested: bool) -> None:
    def refuse(problem: str) -> InvalidDeclaration:
        return InvalidDeclaration(f"Attribute '{path}': {problem}")

    if attribute.type not in TYPES:
        raise refuse(f"unknown type '{attribute.type}'; use one of {', '.join(TYPES)}.")
    if attribute.mutability not in MUTABILITIES:
        raise refuse(
            f"mutability '{attribute.mutability}' is not supported; use 'readWrite' (the identity provider's "
            "values are kept, returned and may change)."
        )
    if attribute.returned != "default":
        raise refuse(f"returned '{attribute.returned}' is not supported; use 'default'.")
    if attribute.uniqueness != "none":
        raise refuse(
            f"uniqueness '{attribute.uniqueness}' is not supported: this service does not enforce uniqueness "
            "of custom attributes; use 'none'."
        )
    if nested and attribute.required:
        # Only an extension's own attributes are checked for presence (scim/resource_type.py builds the values
        # of a complex attribute without required fields, as the core schema's sub-attributes need none).
        raise refuse("a sub-attribute cannot be required; make the complex attribute itself required.")
    if attribute.canonical_values and attribute.type not in ("string", "reference"):
        raise refuse(f"canonicalValues apply to string attributes, not to a {attribute.type}.")
    if attribute.type == "complex":
        if nested:
            raise refuse("a sub-attribute cannot be complex (RFC 7643 §2.4 allows one level).")
        if not attribute.sub_attributes:
            raise refuse("a complex attribute needs subAttributes.")
        _check_attributes(attribute.sub_attributes, within=f"{path}.")
    elif attribute.sub_attributes:
        raise refuse(f"only a complex attribute has subAttributes, and this one is a {attribute.type}.")


def to_schema(declaration: SchemaDeclaration) -> Schema:
    """The declaration as the Schema the User resource type is built from."""
    return Schema(
        declaration.id,
        declaration.name or declaration.id.rpartition(":")[2] or declaration.id,
        declaration.description,
        tuple(_attribute(attribute) for attribute in declaration.attributes),
    )


def _attribute(declared: AttributeDeclaration) -> Attribute:
    return Attribute(
        declared.name,
        declared.type,
        multi_valued=declared.multi_valued,
        required=declared.required,
        case_exact=declared.case_exact,
        # A str in the declaration, so that another value gets the refusal above rather than msgspec's.
        mutability=cast(Mutability, declared.mutability),
        returned=declared.returned,
        uniqueness=declared.uniqueness,
        description=declared.description,
        canonical_values=tuple(declared.canonical_values),
        reference_types=tuple(declared.reference_types),
        sub_attributes=tuple(_attribute(sub) for sub in declared.sub_attributes),
    )
