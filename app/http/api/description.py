"""The management API's part of /openapi.json (app/http/openapi.py merges it): its paths, its error shape and
its bodies, described by the msgspec types the routes decode and encode with."""

from __future__ import annotations

from typing import Any

import msgspec

from app.http.api import access_routes
from app.http.api.access_routes import AccessOutput
from app.http.api.edge import DEFAULT_LIMIT, MAX_KEY_LENGTH, MAX_LIMIT
from app.http.api.org_routes import OrgInput, OrgOutput
from app.http.api.responses import ErrorBody
from app.http.api.token_routes import IssuedToken, TokenInput, TokenOutput

JSON = "application/json"
_REF = "#/components/schemas/Api{name}"

_ERRORS = {
    400: "The request is malformed: a parameter, a cursor this list did not give, a body that is not JSON.",
    401: "No bearer token, or an unknown or revoked one.",
    403: "The token's scope does not allow this endpoint.",
    404: "No such organization for this token (another organization's is answered the same way), or no such "
    "resource in it.",
    409: "A conflict with the current state (a name taken, too many tokens), or a request with this "
    "Idempotency-Key still in progress.",
    413: "The request body is over the size limit.",
    422: "The body is JSON of the wrong shape, or this Idempotency-Key was used with another request.",
    429: "The token is over its rate limit, or too many requests are in progress; see Retry-After.",
    503: "The database is unavailable or too busy; nothing was changed. See Retry-After.",
}
_AUTHED = [401, 403, 429, 503]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _responses(success: dict[int, tuple[str, str | None]], *errors: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (description, schema) in success.items():
        content = {"content": {JSON: {"schema": _ref(schema)}}} if schema else {}
        responses[str(status)] = {"description": description, **content}
    for status in sorted({*errors, *_AUTHED}):
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {JSON: {"schema": _ref("ErrorBody")}},
        }
    return responses


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


_ORG = {
    "name": "org",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The organization's id (or its unique name).",
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "description": "Makes a retry safe: the same key with the same request within 24 hours returns the first "
    "response (marked Idempotent-Replayed: true) without doing the work again.",
}
_PAGING = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "description": f"Items in the page, {DEFAULT_LIMIT} when absent.",
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "The previous page's next_cursor, unchanged; absent for the first page.",
    },
]


def _page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": _ref(item)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/api/v1/orgs": {
            "post": {
                "operationId": "apiCreateOrg",
                "summary": "Create an organization (platform tokens).",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _body("OrgInput"),
                "responses": _responses({201: ("The organization.", "OrgOutput")}, 400, 409, 413, 422),
            }
        },
        "/api/v1/orgs/{org}": {
            "parameters": [_ORG],
            "get": {
                "operationId": "apiGetOrg",
                "summary": "An organization.",
                "responses": _responses({200: ("The organization.", "OrgOutput")}, 404),
            },
        },
        "/api/v1/orgs/{org}/tokens": {
            "parameters": [_ORG],
            "get": {
                "operationId": "apiListTokens",
                "summary": "The organization's tokens, oldest first (never their secrets).",
                "parameters": _PAGING,
                "responses": _responses({200: ("A page of tokens.", "TokenPage")}, 400, 404),
            },
            "post": {
                "operationId": "apiIssueToken",
                "summary": "Issue a token; the answer holds it, once. At most two active scim tokens.",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _body("TokenInput"),
                "responses": _responses(
                    {201: ("The token, shown once.", "IssuedToken")}, 400, 404, 409, 413, 422
                ),
            },
        },
        "/api/v1/orgs/{org}/tokens/{token_id}": {
            "parameters": [
                _ORG,
                {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "delete": {
                "operationId": "apiRevokeToken",
                "summary": "Revoke a token; it stops working within SCIMLEDGER_TOKEN_CACHE_SECONDS.",
                "responses": _responses({204: ("Revoked.", None)}, 404),
            },
        },
        **access_routes.path_description(
            _ORG, _responses({200: ("The answer, allowed or not.", "AccessOutput")}, 400, 404)
        ),
    }


def schemas() -> dict[str, Any]:
    """The components the paths refer to, each named `Api` + its msgspec type's name."""
    _, definitions = msgspec.json.schema_components(
        [ErrorBody, OrgInput, OrgOutput, TokenInput, TokenOutput, IssuedToken, AccessOutput],
        ref_template=_REF,
    )
    return {
        **{"Api" + name: schema for name, schema in definitions.items()},
        "ApiTokenPage": _page_of("TokenOutput"),
    }
