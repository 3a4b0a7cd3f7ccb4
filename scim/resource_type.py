"""A resource type (RFC 7643 §6): its schemas, how a name resolves against them, and the msgspec structs
generated from them that validate and canonicalize a resource's values."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from scim.errors import invalid_value
from scim.schema import COMMON_BY_NAME, EXTERNAL_ID, IDENTIFIERS, MAX_IDENTIFIER_LENGTH, Attribute, Schema


@dataclass(frozen=True, slots=True)
class Resolved:
    """An attribute path resolved against a resource type: where it lives and what it is."""

    extension: str | None  # the extension URN holding the attribute, None for core and common attributes
    attribute: Attribute
    sub_attribute: Attribute | None = None

    @property
    def target(self) -> Attribute:
        return self.sub_attribute or self.attribute

    def dotted(self) -> str:
        name = (
            self.attribute.name
            if self.sub_attribute is None
            else (f"{self.attribute.name}.{self.sub_attribute.name}")
        )
        return f"{self.extension}:{name}" if self.extension else name


_SCALAR_TYPES: Mapping[str, Any] = {
    "string": str,
    "reference": str,
    "binary": str,
    "boolean": bool,
    "integer": int,
    "decimal": float,
    "dateTime": datetime.datetime,
}


def _python_type(attribute: Attribute, struct_name: str) -> Any:
    if attribute.type == "complex":
        item: Any = _struct(struct_name, attribute.sub_attributes)
    else:
        item = _SCALAR_TYPES[attribute.type]
    return list[item] if attribute.multi_valued else item


def _fields(
    name: str, attributes: Iterable[Attribute], required: bool
) -> tuple[list[tuple[str, Any, Any] | tuple[str, Any]], dict[str, str]]:
    # Field names are positional because SCIM names ("$ref", URNs) are not Python identifiers.
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    renames: dict[str, str] = {}
    for index, attribute in enumerate(attributes):
        if not attribute.stored:
            continue
        field_name = f"f{index}"
        renames[field_name] = attribute.name
        python_type = _python_type(attribute, f"{name}_{attribute.name.strip('$')}")
        if required and attribute.required:
            if python_type is str:
                # Required means assigned, and an empty string assigns nothing (RFC 7643 §2.5).
                python_type = Annotated[str, msgspec.Meta(min_length=1)]
            fields.append((field_name, python_type))
        else:
            fields.append((field_name, python_type | None | msgspec.UnsetType, msgspec.UNSET))
    return fields, renames


def _struct(
    name: str,
    attributes: Iterable[Attribute],
    required: bool = False,
    extra: Iterable[tuple[str, str, Any]] = (),
) -> type[msgspec.Struct]:
    fields, renames = _fields(name, attributes, required)
    for field_name, encoded_name, python_type in extra:
        renames[field_name] = encoded_name
        fields.append((field_name, python_type | None | msgspec.UnsetType, msgspec.UNSET))
    return msgspec.defstruct(name, fields, rename=renames, kw_only=True, omit_defaults=True)


def _prune(value: Any) -> Any:
    """Null and empty values mean 'unassigned' (RFC 7643 §2.5): drop them so a resource has one shape."""
    # One pass, recursing only into containers: every request body goes through here.
    if isinstance(value, dict):
        pruned = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = _prune(item)
                if not item:
                    continue
            elif item is None:
                continue
            pruned[key] = item
        return pruned
    if isinstance(value, list):
        kept = []
        for element in value:
            if isinstance(element, dict):
                element = _prune(element)
                if not element:
                    continue
            elif isinstance(element, list):
                element = _prune(element)
            elif element is None:
                continue
            kept.append(element)
        return kept
    return value


@dataclass(frozen=True)
class ResourceType:
    name: str
    endpoint: str
    description: str
    schema: Schema
    extensions: tuple[Schema, ...] = ()
    _validator: type[msgspec.Struct] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        extensions = (
            # Required attributes of an extension are required when the extension is sent at all.
            (f"x{index}", extension.id, _struct(extension.name, extension.attributes, required=True))
            for index, extension in enumerate(self.extensions)
        )
        validator = _struct(f"{self.name}Resource", self._core_attributes, required=True, extra=extensions)
        object.__setattr__(self, "_validator", validator)

    def with_extensions(self, extensions: Iterable[Schema]) -> ResourceType:
        """This resource type with an organization's own extensions after the built-in ones."""
        return ResourceType(
            self.name, self.endpoint, self.description, self.schema, (*self.extensions, *extensions)
        )

    @property
    def validator(self) -> type[msgspec.Struct]:
        """The msgspec Struct that `validate` converts a canonicalized resource to: what a client may send."""
        return self._validator

    @functools.cached_property
    def schema_ids(self) -> tuple[str, ...]:
        return (self.schema.id, *(extension.id for extension in self.extensions))

    def extension(self, urn: str) -> Schema | None:
        lowered = urn.lower()
        for extension in self.extensions:
            if extension.id.lower() == lowered:
                return extension
        return None

    def extension_at(self, schema_urn: str | None, name: str) -> Schema | None:
        """The extension that a path names as a whole, such as `urn:…:enterprise:2.0:User` (which parses as
        the URN `urn:…:enterprise:2.0` and the name `User`); None for any other path."""
        return self.extension(f"{schema_urn}:{name}") if schema_urn is not None else None

    @functools.cached_property
    def _short_forms(self) -> Mapping[str, Schema]:
        """Extension attributes that a client may name without their URN (`department`): those whose name no
        core or common attribute and no other extension has, so that the short name means one thing only."""
        owners: dict[str, list[Schema]] = {}
        for extension in self.extensions:
            for attribute in extension.attributes:
                owners.setdefault(attribute.name.lower(), []).append(extension)
        return {
            name: schemas[0]
            for name, schemas in owners.items()
            if len(schemas) == 1 and self.schema.attribute(name) is None and name not in COMMON_BY_NAME
        }

    def resolve(self, schema_urn: str | None, name: str, sub_name: str | None = None) -> Resolved | None:
        """Resolve `[urn:]name[.sub]`; None when the resource type has no such attribute."""
        return self._resolutions(schema_urn, name, sub_name)

    @functools.cached_property
    def _resolutions(self) -> Callable[[str | None, str, str | None], Resolved | None]:
        # The same few paths come in request after request (a filter resolved its path twice, 1.6 us each);
        # bounded, as clients may spell them in any case.
        return functools.lru_cache(maxsize=1024)(self._resolve)

    def _resolve(self, schema_urn: str | None, name: str, sub_name: str | None) -> Resolved | None:
        extension: Schema | None = None
        if schema_urn is not None and schema_urn.lower() != self.schema.id.lower():
            extension = self.extension(schema_urn)
            if extension is None:
                return None
        elif schema_urn is None:
            extension = self._short_forms.get(name.lower())
        if extension is not None:
            attribute = extension.attribute(name)
        else:
            attribute = self.schema.attribute(name) or COMMON_BY_NAME.get(name.lower())
        if attribute is None:
            return None
        sub_attribute = None
        if sub_name is not None:
            sub_attribute = attribute.sub(sub_name)
            if sub_attribute is None:
                return None
        return Resolved(extension.id if extension else None, attribute, sub_attribute)

    def knows(self, name: str, value: Any) -> bool:
        """Whether this type has the schema a URN-qualified `name` names, and each attribute `value` holds
        under it; a name without a URN is the core schema's, which never changes."""
        if name[:4].lower() != "urn:":
            return True
        extension = self.extension(name)
        if extension is not None:
            return not isinstance(value, dict) or all(extension.attribute(key) is not None for key in value)
        # `urn:…:User:attribute` (or `.sub`), as a PATCH path or a pathless key names one attribute.
        schema, _, attribute = name.rpartition(":")
        return self.resolve(schema, attribute.partition(".")[0].partition("[")[0]) is not None

    def canonicalize(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Spell every known attribute name canonically and drop the unknown ones (RFC 7644 §3.3 lets
        servers ignore attributes they do not support)."""
        canonical: dict[str, Any] = {}
        for key, value in raw.items():
            extension = self.extension(key) if key[:4].lower() == "urn:" else None
            if extension is not None:
                canonical[extension.id] = _canonical_value(extension.attribute, value)
                continue
            attribute = self.schema.attribute(key) or COMMON_BY_NAME.get(key.lower())
            if attribute is not None:
                canonical[attribute.name] = _canonical_attribute(attribute, value)
            elif key.lower() == "schemas":
                canonical["schemas"] = value
        return canonical

    def validate(
        self, raw: Mapping[str, Any], max_identifier_length: int = MAX_IDENTIFIER_LENGTH
    ) -> dict[str, Any]:
        """The storable attributes of a client-sent resource, canonical and type-checked.

        readOnly attributes (id, meta, groups) are the server's and writeOnly ones (password) are never
        kept, so both are dropped rather than refused: Okta sends `groups: []` and `password` on create.
        Booleans sent as strings ("False", as Entra does) are accepted.
        """
        try:
            validated = msgspec.convert(self.canonicalize(raw), self._validator, strict=False)
        except msgspec.ValidationError as error:
            raise invalid_value(_describe_validation_error(str(error))) from error
        result: dict[str, Any] = _prune(msgspec.to_builtins(validated))
        _check_identifier_lengths(result, max_identifier_length)
        return result

    def in_schema_order(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """`attributes` with keys in the order the schema lists them (jsonb storage does not keep order)."""
        ordered = _ordered(self._core_attributes, attributes)
        for extension in self.extensions:
            value = attributes.get(extension.id)
            if isinstance(value, dict):
                # Values that an org's earlier declaration described and its current one does not are kept
                # in the profile, never rendered: an extension left with nothing is absent.
                described = _ordered(extension.attributes, value)
                if described:
                    ordered[extension.id] = described
        return ordered

    @functools.cached_property
    def _core_attributes(self) -> tuple[Attribute, ...]:
        return (EXTERNAL_ID, *self.schema.attributes)

    def to_scim(self, location: str) -> dict[str, Any]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": [
                {"schema": extension.id, "required": False} for extension in self.extensions
            ],
            "meta": {"resourceType": "ResourceType", "location": location},
        }


def _check_identifier_lengths(attributes: Mapping[str, Any], limit: int) -> None:
    for name in IDENTIFIERS:
        value = attributes.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise invalid_value(
                f"Attribute '{name}' is {len(value):,} characters long; it may be at most {limit:,}."
            )


def validate_values(attribute: Attribute, values: list[Any]) -> list[Any]:
    """The values of multi-valued `attribute` a client sent, canonical and type-checked as `validate` would,
    so that a PATCH refuses a bad value before it compares any with the values already there."""
    try:
        converted = msgspec.convert(
            _canonical_attribute(attribute, values), _values_type(attribute), strict=False
        )
    except msgspec.ValidationError as error:
        raise invalid_value(_describe_validation_error(str(error), attribute.name)) from error
    pruned: list[Any] = _prune(msgspec.to_builtins(converted))
    return pruned


@functools.lru_cache(maxsize=64)
def _values_type(attribute: Attribute) -> Any:
    return _python_type(attribute, f"{attribute.name}_value")


def _ordered(attributes: tuple[Attribute, ...], value: Mapping[str, Any]) -> dict[str, Any]:
    ordered: dict[str, Any] = {}
    for attribute in attributes:
        if attribute.name not in value:
            continue
        item = value[attribute.name]
        if attribute.sub_attributes and isinstance(item, dict):
            item = _ordered(attribute.sub_attributes, item)
        elif attribute.sub_attributes and isinstance(item, list):
            item = [
                _ordered(attribute.sub_attributes, element) if isinstance(element, dict) else element
                for element in item
            ]
        ordered[attribute.name] = item
    return ordered


def _canonical_attribute(attribute: Attribute, value: Any) -> Any:
    if attribute.type != "complex":
        return value
    if attribute.multi_valued and isinstance(value, list):
        return [_canonical_value(attribute.sub, element) for element in value]
    return _canonical_value(attribute.sub, value)


def _canonical_value(attribute_named: Callable[[str], Attribute | None], value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    canonical = {}
    for key, item in value.items():
        attribute = attribute_named(key)
        if attribute is not None:
            canonical[attribute.name] = _canonical_attribute(attribute, item)
    return canonical


def _describe_validation_error(message: str, within: str = "") -> str:
    """Turn msgspec's "Expected `str`, got `int` - at `$.emails[0].value`" into an admin-readable detail;
    `within` names the attribute whose value was checked on its own (`$[0].value` is then emails[0].value)."""
    problem, _, where = message.partition(" - at `")
    attribute = within + where.rstrip("`").removeprefix("$.").removeprefix("$") or None
    if problem.startswith("Object missing required field"):
        missing = problem.split("`")[1]
        prefix = f"{attribute}." if attribute else ""
        return f"Attribute '{prefix}{missing}' is required."
    if problem.startswith("Expected `str` of length >= 1"):
        return f"Attribute '{attribute}' must not be empty."
    problem = problem.replace("`", "").replace("null", "nothing")
    if attribute:
        return f"Attribute '{attribute}' has an invalid value: {problem.lower()}."
    return f"The resource is invalid: {problem.lower()}."
