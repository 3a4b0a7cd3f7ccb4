"""RFC 7643 schemas as data.

One definition serves every consumer: /Schemas renders it, request bodies are validated by msgspec
structs generated from it, filters and PATCH paths resolve attribute names against it (names are
case-insensitive, RFC 7643 §2.1), and the SQL compiler reads each attribute's type and caseExact.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from scim.errors import invalid_value

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"

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


def _multi_valued(
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
_COMMON_BY_NAME = _by_name(COMMON_ATTRIBUTES)

USER_SCHEMA = Schema(
    CORE_USER,
    "User",
    "User Account",
    (
        Attribute(
            "userName",
            required=True,
            uniqueness="server",
            description="Unique identifier for the User, used to sign in. Unique per organization, ignoring case.",
        ),
        Attribute(
            "name",
            "complex",
            description="The components of the user's real name.",
            sub_attributes=tuple(
                Attribute(sub, description=f"The {sub} of the User's name.")
                for sub in (
                    "formatted",
                    "familyName",
                    "givenName",
                    "middleName",
                    "honorificPrefix",
                    "honorificSuffix",
                )
            ),
        ),
        Attribute("displayName", description="The name of the User, suitable for display to end-users."),
        Attribute("nickName", description="The casual way to address the user."),
        Attribute(
            "profileUrl", "reference", reference_types=("external",), description="The User's profile URL."
        ),
        Attribute("title", description="The user's title, such as 'Vice President'."),
        Attribute("userType", description="The organization-to-user relationship."),
        Attribute("preferredLanguage", description="The User's preferred written or spoken language."),
        Attribute("locale", description="The User's default location, e.g. 'en-US'."),
        Attribute("timezone", description="The User's time zone in the IANA Time Zone database format."),
        Attribute(
            "active",
            "boolean",
            description=(
                "The User's administrative status. A PATCH that removes it leaves it unassigned, which counts "
                "as not active: the user is deactivated, and the resource shows no 'active' until a client "
                "sets it again (a PATCH setting it to true reactivates)."
            ),
        ),
        Attribute(
            "password",
            mutability=WRITE_ONLY,
            returned="never",
            description="Accepted from clients such as Okta and never stored or returned.",
        ),
        _multi_valued("emails", "Email addresses for the user", ("work", "home", "other")),
        _multi_valued(
            "phoneNumbers",
            "Phone numbers for the User",
            ("work", "home", "mobile", "fax", "pager", "other"),
        ),
        _multi_valued(
            "ims",
            "Instant messaging addresses for the User",
            ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
        ),
        _multi_valued(
            "photos", "URLs of photos of the User", ("photo", "thumbnail"), "reference", ("external",)
        ),
        Attribute(
            "addresses",
            "complex",
            multi_valued=True,
            description="A physical mailing address for this User.",
            sub_attributes=(
                *(
                    Attribute(sub)
                    for sub in (
                        "formatted",
                        "streetAddress",
                        "locality",
                        "region",
                        "postalCode",
                        "country",
                    )
                ),
                Attribute("type", canonical_values=("work", "home", "other")),
                Attribute("primary", "boolean"),
            ),
        ),
        Attribute(
            "groups",
            "complex",
            multi_valued=True,
            mutability=READ_ONLY,
            description="The groups the user belongs to, managed through the Group resource.",
            sub_attributes=(
                Attribute("value", mutability=READ_ONLY),
                Attribute("$ref", "reference", mutability=READ_ONLY, reference_types=("Group",)),
                Attribute("display", mutability=READ_ONLY),
                Attribute("type", mutability=READ_ONLY, canonical_values=("direct", "indirect")),
            ),
        ),
        _multi_valued("entitlements", "A list of entitlements for the User", ()),
        _multi_valued("roles", "A list of roles for the User", ()),
        _multi_valued("x509Certificates", "A list of certificates issued to the User", (), "binary"),
    ),
)

ENTERPRISE_USER_SCHEMA = Schema(
    ENTERPRISE_USER,
    "EnterpriseUser",
    "Enterprise User",
    (
        Attribute("employeeNumber", description="Numeric or alphanumeric identifier assigned to a person."),
        Attribute("costCenter", description="Identifies the name of a cost center."),
        Attribute("organization", description="Identifies the name of an organization."),
        Attribute("division", description="Identifies the name of a division."),
        Attribute("department", description="Identifies the name of a department."),
        Attribute(
            "manager",
            "complex",
            description="The User's manager.",
            sub_attributes=(
                Attribute(
                    "value", description="The id of the SCIM resource representing the User's manager."
                ),
                # value and $ref are the client's, readWrite as RFC 7643 §8.7.2 declares them. displayName is
                # readOnly: a client's is not kept, and the service does not fill it either, since a copy of
                # the manager's name would go stale whenever the manager's own resource changes.
                Attribute(
                    "$ref",
                    "reference",
                    reference_types=("User",),
                    description="The URI of the manager's User resource, as the client sent it.",
                ),
                Attribute(
                    "displayName",
                    mutability=READ_ONLY,
                    description="Not returned: the manager's name is on the manager's own User resource.",
                ),
            ),
        ),
    ),
)


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
            if len(schemas) == 1 and self.schema.attribute(name) is None and name not in _COMMON_BY_NAME
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
            attribute = self.schema.attribute(name) or _COMMON_BY_NAME.get(name.lower())
        if attribute is None:
            return None
        sub_attribute = None
        if sub_name is not None:
            sub_attribute = attribute.sub(sub_name)
            if sub_attribute is None:
                return None
        return Resolved(extension.id if extension else None, attribute, sub_attribute)

    def canonicalize(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Spell every known attribute name canonically and drop the unknown ones (RFC 7644 §3.3 lets
        servers ignore attributes they do not support)."""
        canonical: dict[str, Any] = {}
        for key, value in raw.items():
            extension = self.extension(key) if key[:4].lower() == "urn:" else None
            if extension is not None:
                canonical[extension.id] = _canonical_value(extension.attribute, value)
                continue
            attribute = self.schema.attribute(key) or _COMMON_BY_NAME.get(key.lower())
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


USER = ResourceType("User", "/Users", "User Account", USER_SCHEMA, (ENTERPRISE_USER_SCHEMA,))


def select_attributes(
    resource_type: ResourceType,
    document: dict[str, Any],
    include: Iterable[Any] | None,
    exclude: Iterable[Any] | None,
) -> dict[str, Any]:
    """RFC 7644 §3.9 `attributes` / `excludedAttributes` on a rendered resource. `schemas` and `id` are
    always returned; unknown names are ignored. The paths are `scim.filter.AttrPath`s. With neither, the
    document itself: most requests select nothing, and copying it was measurable."""
    include, exclude = list(include or ()), list(exclude or ())
    if not include and not exclude:
        return document
    # (extension URN or None, attribute name) -> the sub-attributes named, or None for the whole attribute
    tree: dict[tuple[str | None, str], set[str] | None] = {}
    for path in include or exclude:
        whole = resource_type.extension_at(path.schema, path.name) if path.sub is None else None
        if whole is not None:
            tree[(None, whole.id)] = None  # the extension's object is a member of the document itself
            continue
        resolved = resource_type.resolve(path.schema, path.name, path.sub)
        if resolved is None:
            continue
        key = (resolved.extension, resolved.attribute.name)
        if resolved.sub_attribute is None:
            tree[key] = None
        elif key not in tree or tree[key] is not None:
            tree.setdefault(key, set()).add(resolved.sub_attribute.name)  # type: ignore[union-attr]
    if include:
        return _keep(document, tree)
    return _drop(document, tree)


def _keep(
    document: Mapping[str, Any], tree: Mapping[tuple[str | None, str], set[str] | None]
) -> dict[str, Any]:
    selected: dict[str, Any] = {key: document[key] for key in ("schemas", "id") if key in document}
    for (extension, name), subs in tree.items():
        source = document.get(extension, {}) if extension else document
        if not isinstance(source, dict) or name not in source:
            continue
        target = selected.setdefault(extension, {}) if extension else selected
        target[name] = source[name] if subs is None else _pick(source[name], subs, keep=True)
    return selected


def _drop(
    document: Mapping[str, Any], tree: Mapping[tuple[str | None, str], set[str] | None]
) -> dict[str, Any]:
    result = dict(document)
    for (extension, name), subs in tree.items():
        if extension is None and name in ("id", "schemas"):
            continue  # returned always
        source = result.get(extension) if extension else result
        if not isinstance(source, dict) or name not in source:
            continue
        if extension:
            target = result[extension] = dict(source)
        else:
            target = result
        if subs is None:
            del target[name]
        else:
            target[name] = _pick(target[name], subs, keep=False)
    return result


def _pick(value: Any, subs: set[str], keep: bool) -> Any:
    """Keep (or drop) the named sub-attributes of a complex value, or of each of a multi-valued one's values."""
    if isinstance(value, list):
        return [_pick(item, subs, keep) for item in value if isinstance(item, dict)]
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if (key in subs) == keep}
    return value


GROUP_SCHEMA = Schema(
    CORE_GROUP,
    "Group",
    "Group",
    (
        Attribute(
            "displayName",
            required=True,
            mutability=IMMUTABLE,
            description="'<prefix>-<Project>-<Role>'. Set by the app; a client may send it but not change it.",
        ),
        Attribute(
            "members",
            "complex",
            multi_valued=True,
            description="The users who hold this Project × Role.",
            sub_attributes=(
                Attribute(
                    "value", mutability=IMMUTABLE, case_exact=True, description="The id of a member User."
                ),
                Attribute("$ref", "reference", mutability=IMMUTABLE, reference_types=("User",)),
                Attribute("display", mutability=READ_ONLY),
                Attribute("type", mutability=IMMUTABLE, canonical_values=("User",)),
            ),
        ),
    ),
)

GROUP = ResourceType("Group", "/Groups", "A Project × Role group of the app", GROUP_SCHEMA)
