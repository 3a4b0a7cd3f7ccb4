"""The OpenAPI 3.1 description of every route, served at /openapi.json.

It is kept true by tests rather than generated: `test_openapi.py` compares its operations with the app's
routes, and the Schemathesis run checks every response the service gives against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.http.api import description as api_description
from app.http.api import webhook_description
from app.http.openapi_components import FIXED_SCHEMAS, INSTANT, list_of, ref, resource_schemas

SCIM = "application/scim+json"

_ERRORS = {
    400: "The request is malformed or breaks a SCIM rule; `scimType` says which.",
    401: "No bearer token, or an unknown or revoked one.",
    403: "The token's scope does not allow this endpoint, or SCIM may not do this here.",
    404: "No such resource in the token's organization.",
    409: "The userName or group name is taken, or another request changed the resource at the same time.",
    412: "The resource changed since the version in If-Match.",
    413: "The request body is over the size limit.",
    429: (
        "The token is over its rate limit, or it or its organization has as many requests in progress as "
        "allowed; see Retry-After."
    ),
    503: (
        "The database is unavailable, or busy enough that this request's query ran past the statement "
        "timeout; nothing was changed. See Retry-After."
    ),
}


def _json(schema: dict[str, Any], media_type: str = SCIM) -> dict[str, Any]:
    return {"content": {media_type: {"schema": schema}}}


def _responses(success: dict[int, tuple[str, str | None]], *errors: int) -> dict[str, Any]:
    """`success` maps a status to (description, schema name or None for no body)."""
    responses: dict[str, Any] = {}
    for status, (description, schema) in success.items():
        responses[str(status)] = {"description": description, **(_json(ref(schema)) if schema else {})}
    for status in errors:
        responses[str(status)] = {"description": _ERRORS[status], **_json(ref("Error"))}
    return responses


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'The ETag of the version this change is based on, e.g. W/"3".',
}
_SELECTION = [
    _query("attributes", {"type": "string"}, "Comma-separated attributes to return (RFC 7644 §3.4.2.5)."),
    _query("excludedAttributes", {"type": "string"}, "Comma-separated attributes to leave out."),
]
_LISTING = [
    _query("filter", {"type": "string"}, 'A SCIM filter, e.g. userName eq "ann@example.com".'),
    _query("startIndex", {"type": "integer"}, "1-based index of the first result; below 1 counts as 1."),
    _query(
        "count", {"type": "integer"}, "Page size; negative counts as 0, capped at the configured maximum."
    ),
    _query("sortBy", {"type": "string"}, "Attribute to sort by; provisioning order otherwise."),
    _query("sortOrder", {"type": "string", "enum": ["ascending", "descending"]}, "Sort direction."),
    *_SELECTION,
]
_AUTHED = [401, 403, 429, 503]


def _body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {SCIM: {"schema": ref(schema)}, "application/json": {"schema": ref(schema)}},
    }


def _scim_resource(kind: str, input_schema: str) -> dict[str, Any]:
    """The collection and item paths of Users or Groups."""
    collection = {
        "get": {
            "operationId": f"list{kind}",
            "summary": f"List or filter {kind}, a page at a time.",
            "parameters": _LISTING,
            "responses": _responses({200: ("A ListResponse.", f"{kind}List")}, 400, *_AUTHED),
        },
    }
    item_errors = [400, 404, 409, 412, 413, *_AUTHED]
    item: dict[str, Any] = {
        "parameters": [_ID],
        "get": {
            "operationId": f"get{kind[:-1]}",
            "parameters": _SELECTION,
            "responses": _responses({200: ("The resource.", kind[:-1])}, 400, 404, *_AUTHED),
        },
        "put": {
            "operationId": f"replace{kind[:-1]}",
            "parameters": [_IF_MATCH, *_SELECTION],
            "requestBody": _body(input_schema),
            "responses": _responses({200: ("The resource as replaced.", kind[:-1])}, *item_errors),
        },
        "patch": {
            "operationId": f"patch{kind[:-1]}",
            "parameters": [_IF_MATCH, *_SELECTION],
            "requestBody": _body("PatchOp"),
            "responses": _responses(
                {200: ("The resource as patched.", kind[:-1]), 204: ("Patched.", None)}, *item_errors
            ),
        },
        "delete": {
            "operationId": f"delete{kind[:-1]}",
            "parameters": [_IF_MATCH],
            "responses": _responses(
                {204: ("Deleted (Users) or unlinked (Groups).", None)}, 404, 409, 412, *_AUTHED
            ),
        },
    }
    return {"collection": collection, "item": item}


def _discovery(path: str, summary: str, item: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary, **_json({"type": "object"})}}
    if item:
        responses["404"] = {"description": "No such entry.", **_json(ref("Error"))}
    return {"get": {"summary": summary, "security": [], "responses": responses}}


def _audit(
    operation: str, summary: str, parameters: list[dict[str, Any]], report: str = "AuditReport"
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "description": "Needs a token with the auditor scope.",
            "parameters": parameters,
            "responses": _responses({200: (summary, report)}, 400, *_AUTHED),
        }
    }


def _audit_export() -> dict[str, Any]:
    summary = (
        "An evidence bundle: the access review of the period, every event of the organization up to its seal "
        "head with their seals, the head, and a manifest signed by the deployment's Ed25519 key (README: "
        "*Evidence bundles*). `scimledger audit verify-bundle` checks it offline."
    )
    responses = _responses({}, 400, 401, 403, 429)
    responses["200"] = {
        "description": summary,
        "content": {"application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}},
    }
    responses["409"] = {
        "description": "The log fails its seal chain: nothing is signed over it until `audit verify` is run.",
        **_json(ref("Error")),
    }
    responses["503"] = {
        "description": "No signing key is configured (SCIMLEDGER_AUDIT_SIGNING_KEY), or the service is busy.",
        **_json(ref("Error")),
    }
    return {
        "get": {
            "operationId": "auditExport",
            "summary": "The organization's evidence bundle for a period, as a zip.",
            "description": f"Needs a token with the auditor scope. {summary}",
            "parameters": [
                _query("from", INSTANT, "Start of the review period.", required=True),
                _query("to", INSTANT, "End of the review period.", required=True),
            ],
            "responses": responses,
        }
    }


def _probe(summary: str, statuses: dict[int, str], media_type: str = "application/json") -> dict[str, Any]:
    body = {"type": "object"} if media_type == "application/json" else {"type": "string"}
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {
                str(status): {"description": description, **_json(body, media_type)}
                for status, description in statuses.items()
            },
        }
    }


def _search(operation_id: str, summary: str, listed: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "requestBody": _body("SearchRequestBody"),
            "responses": _responses({200: ("A ListResponse.", listed)}, 400, 413, *_AUTHED),
        }
    }


def _with_malformed_http(paths: dict[str, Any]) -> dict[str, Any]:
    """uvicorn answers a request it cannot parse as HTTP (a Content-Length of "qz", say) with a plain-text
    400 before the app sees it, on any path: every operation documents that answer too."""
    malformed = {"text/plain": {"schema": {"type": "string"}}}
    for item in paths.values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            known = operation["responses"].setdefault(
                "400", {"description": "The request is not well-formed HTTP.", "content": {}}
            )
            known.setdefault("content", {}).update(malformed)
    return paths


def document() -> dict[str, Any]:
    users, groups = _scim_resource("Users", "UserInput"), _scim_resource("Groups", "GroupInput")
    users["collection"]["post"] = {
        "operationId": "createUser",
        "summary": "Create (provision) a user.",
        "requestBody": _body("UserInput"),
        "responses": _responses({201: ("The user as created.", "User")}, 400, 409, 413, *_AUTHED),
    }
    groups["collection"]["post"] = {
        "operationId": "createGroup",
        "summary": "Refused: groups exist for each Project × Role; link them with Push Groups → Link Group.",
        "responses": _responses({}, 403, 401, 429, 503),
    }
    period = [
        _query("since", INSTANT, "Only events at or after this instant."),
        _query("until", INSTANT, "Only events before this instant."),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scimledger",
            "version": "1",
            "description": "SCIM 2.0 (RFC 7643/7644) provisioning for Project × Role access, and its audit API.",
        },
        "security": [{"bearer": []}],
        "paths": _with_malformed_http(
            {
                "/scim/v2/Users": users["collection"],
                "/scim/v2/Users/{id}": users["item"],
                "/scim/v2/Groups": groups["collection"],
                "/scim/v2/Groups/{id}": groups["item"],
                "/scim/v2/Users/.search": _search(
                    "searchUsers", "Search users with a body (RFC 7644 §3.4.3), as a GET does.", "UsersList"
                ),
                "/scim/v2/Groups/.search": _search(
                    "searchGroups", "Search groups with a body, as a GET does.", "GroupsList"
                ),
                "/scim/v2/.search": _search(
                    "searchAll", "Search users, then groups, with one body; paged across both.", "SearchList"
                ),
                "/scim/v2/ServiceProviderConfig": _discovery(
                    "ServiceProviderConfig", "What this service supports."
                ),
                "/scim/v2/ResourceTypes": _discovery(
                    "ResourceTypes", "The resource types, as a ListResponse."
                ),
                "/scim/v2/ResourceTypes/{key}": {
                    "parameters": [_KEY],
                    **_discovery("ResourceType", "One resource type.", item=True),
                },
                "/scim/v2/Schemas": _discovery("Schemas", "The schemas, as a ListResponse."),
                "/scim/v2/Schemas/{key}": {
                    "parameters": [_KEY],
                    **_discovery("Schema", "One schema.", item=True),
                },
                "/audit/head": _audit("auditHead", "The newest seal of the organization's log.", []),
                "/audit/verify": _audit(
                    "auditVerify",
                    "Recompute the seal chain and compare it with a head kept elsewhere.",
                    [
                        _query(
                            "head", {"type": "string"}, "A head from /audit/head, kept outside the service."
                        )
                    ],
                ),
                "/audit/history": _audit(
                    "auditHistory",
                    "The organization's events, told in words, in log order, a page at a time: `events`, and "
                    "`next`, the cursor of the following page to pass as `after` (null on the last page).",
                    [
                        _query("user", {"type": "string", "format": "uuid"}, "Only events about this user."),
                        _query(
                            "group", {"type": "string", "format": "uuid"}, "Only events about this group."
                        ),
                        _query("actor", {"type": "string"}, "Only events by this actor."),
                        *period,
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1},
                            "Events in this page: SCIMLEDGER_AUDIT_PAGE_SIZE (1000) when absent, at most "
                            "SCIMLEDGER_AUDIT_MAX_PAGE_SIZE (10000); more is a 400.",
                        ),
                        _query(
                            "after",
                            {"type": "string"},
                            "The `next` of the previous page, unchanged (an opaque cursor); absent for the first.",
                        ),
                    ],
                    report="AuditHistoryPage",
                ),
                "/audit/as-of": _audit(
                    "auditAsOf",
                    "Users, groups and memberships as they stood at an instant, replayed from the log.",
                    [_query("at", INSTANT, "The instant to replay to.", required=True)],
                ),
                "/audit/access": _audit(
                    "auditAccess",
                    "Who held which Project × Role when, and who granted and revoked it.",
                    [
                        _query("from", INSTANT, "Start of the review period.", required=True),
                        _query("to", INSTANT, "End of the review period.", required=True),
                        _query("project", {"type": "string"}, "Only this project."),
                        _query("role", {"type": "string"}, "Only this role."),
                        _query("user", {"type": "string"}, "Only this user."),
                    ],
                ),
                "/audit/export": _audit_export(),
                **api_description.paths(),
                **webhook_description.paths(),
                "/healthz": _probe("Liveness: the process answers.", {200: "Alive."}),
                "/readyz": _probe(
                    "Readiness: database, migrations, runner.",
                    {200: "Ready.", 503: "Not ready; the body says why."},
                ),
                "/metrics": _probe("Prometheus metrics.", {200: "Metrics in the text format."}, "text/plain"),
                "/openapi.json": _probe("This document.", {200: "OpenAPI 3.1."}),
            }
        ),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `scimledger token issue`: scope scim for /scim/v2, auditor for "
                    "/audit, admin (one organization) or platform (every one) for /api/v1.",
                }
            },
            "schemas": {
                **FIXED_SCHEMAS,
                **resource_schemas(),
                "UsersList": list_of("User"),
                "GroupsList": list_of("Group"),
                "SearchList": list_of("User", "Group"),
                **api_description.schemas(),
                **webhook_description.schemas(),
            },
        },
    }


def endpoint(described: dict[str, Any]) -> Callable[[Request], Awaitable[Response]]:
    """The route's handler, serving `described` as built once by create_app."""
    body = JSONResponse(described).body

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi
