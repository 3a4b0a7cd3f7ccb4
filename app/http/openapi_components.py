"""The components of the OpenAPI description (app/http/openapi.py): the bodies the service reads and the
resources and messages it answers with, described by the very msgspec types it decodes them with."""

from __future__ import annotations

from typing import Any

import msgspec

from scim.core_schemas import GROUP, USER
from scim.patch_request import PatchRequest
from scim.query import SearchRequest

REF_PREFIX = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF_PREFIX + name}


INSTANT = {"type": "string", "format": "date-time"}


_META = {
    "type": "object",
    "properties": {
        "resourceType": {"type": "string", "enum": ["User", "Group"]},
        "created": INSTANT,
        "lastModified": INSTANT,
        "location": {"type": "string"},
        "version": {"type": "string"},
    },
}


FIXED_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["schemas", "status", "detail"],
        "properties": {
            "schemas": {"const": ["urn:ietf:params:scim:api:messages:2.0:Error"]},
            "status": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
            "scimType": {"type": "string"},
            "detail": {"type": "string", "minLength": 1},
        },
    },
    "AuditReport": {"type": "object"},
    "AuditHistoryPage": {
        "type": "object",
        "required": ["events", "next"],
        "properties": {
            "events": {"type": "array", "items": {"type": "object"}},
            "next": {"type": ["string", "null"]},
        },
    },
}


def resource_schemas() -> dict[str, Any]:
    """Request bodies described by the very msgspec types the service decodes them with, and the resources
    it returns: those attributes, plus the ones only the server sets."""
    (user, group, patch, search), schemas = msgspec.json.schema_components(
        [USER.validator, GROUP.validator, PatchRequest, SearchRequest], ref_template=REF_PREFIX + "{name}"
    )
    readable = {
        "schemas": {"type": "array", "items": {"type": "string"}},
        "id": {"type": "string", "format": "uuid"},
    }
    returned_groups = {"type": "array", "items": {"type": "object", "required": ["value"]}}
    for name, sent, server_set in (("User", user, {"groups": returned_groups}), ("Group", group, {})):
        schemas[f"{name}Input"] = sent
        schemas[name] = {
            "type": "object",
            "required": ["schemas", "id"],
            "properties": {
                **schemas[sent["$ref"].removeprefix(REF_PREFIX)]["properties"],
                **readable,
                "meta": _META,
                **server_set,
            },
        }
    schemas["PatchOp"] = patch
    schemas["SearchRequestBody"] = search
    return schemas


def list_of(*kinds: str) -> dict[str, Any]:
    items = ref(kinds[0]) if len(kinds) == 1 else {"anyOf": [ref(kind) for kind in kinds]}
    return {
        "type": "object",
        "required": ["schemas", "totalResults", "startIndex", "itemsPerPage", "Resources"],
        "properties": {
            "schemas": {"const": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]},
            "totalResults": {"type": "integer", "minimum": 0},
            "startIndex": {"type": "integer", "minimum": 1},
            "itemsPerPage": {"type": "integer", "minimum": 0},
            "Resources": {"type": "array", "items": items},
        },
    }
