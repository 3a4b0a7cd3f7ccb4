"""The management API's part of /openapi.json (app/http/openapi.py merges it): its paths, its error shape and
its bodies, described by the msgspec types the routes decode and encode with."""

from __future__ import annotations

from typing import Any

import msgspec

from app.http.api import access_routes, connection_routes, portal_routes
from app.http.api.access_routes import AccessOutput
from app.http.api.catalog_routes import (
    ArchivedEntry,
    CreatedEntry,
    EntryOutput,
    GroupOutput,
    MemberOutput,
    NameInput,
)
from app.http.api.connection_routes import ConnectionOutput
from app.http.api.directory_routes import (
    ErasureInput,
    ErasureOutput,
    InviteInput,
    RetentionInput,
    RetentionOutput,
    UserDetailOutput,
    UserOutput,
)
from app.http.api.edge import DEFAULT_LIMIT, MAX_KEY_LENGTH, MAX_LIMIT
from app.http.api.events_routes import PARAMETERS as EVENT_PARAMETERS
from app.http.api.events_routes import EventPage
from app.http.api.grant_routes import GrantInput, GrantOutput
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
        "/api/v1/orgs/{org}/events": {
            "parameters": [_ORG],
            "get": {
                "operationId": "apiOrgEvents",
                "summary": "The organization's public events in log order, from a cursor (docs/events.md).",
                "parameters": EVENT_PARAMETERS,
                "responses": _responses({200: ("A page of events.", "EventPage")}, 400, 404),
            },
        },
        "/api/v1/events": {
            "get": {
                "operationId": "apiPlatformEvents",
                "summary": "Every organization's public events in log order, from a cursor (platform tokens).",
                "parameters": EVENT_PARAMETERS,
                "responses": _responses({200: ("A page of events.", "EventPage")}, 400),
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
        **_catalog_paths("project"),
        **_catalog_paths("role"),
        **_directory_paths(),
        **access_routes.path_description(
            _ORG, _responses({200: ("The answer, allowed or not.", "AccessOutput")}, 400, 404)
        ),
        **portal_routes.path_description(_ORG, _body("PortalLinkInput"), _responses, _IDEMPOTENCY_KEY),
        **connection_routes.path_description(
            _ORG, _responses({200: ("The connection status.", "ConnectionOutput")}, 400, 404)
        ),
    }


_CHANGES = (400, 404, 409, 413, 422)


def _op(
    operation_id: str,
    summary: str,
    success: dict[int, tuple[str, str | None]],
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    post: bool = False,
) -> dict[str, Any]:
    """An operation: a read (400 and 404 besides the authentication errors), or a change (with `body`)."""
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    params = [*(parameters or []), *([_IDEMPOTENCY_KEY] if post else [])]
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = _body(body)
    changes = body is not None or post or operation_id.startswith(("apiRemove", "apiRevoke"))
    operation["responses"] = _responses(success, *(_CHANGES if changes else (400, 404)))
    return operation


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _catalog_paths(kind: str) -> dict[str, Any]:
    title = kind.capitalize()
    ref = _path_param("ref", f"The {kind}'s id or name (ignoring case).")
    archived = {
        "name": "archived",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["true", "false"]},
        "description": f"Include archived {kind}s (false when absent).",
    }
    return {
        f"/api/v1/orgs/{{org}}/{kind}s": {
            "parameters": [_ORG],
            "get": _op(
                f"apiList{title}s",
                f"The organization's {kind}s by name.",
                {200: (f"A page of {kind}s.", "EntryPage")},
                parameters=[*_PAGING, archived],
            ),
            "post": _op(
                f"apiCreate{title}",
                f"Create a {kind} and its Project × Role groups, as `scimledger {kind} create` does.",
                {201: (f"The {kind}.", "CreatedEntry")},
                body="NameInput",
                post=True,
            ),
        },
        f"/api/v1/orgs/{{org}}/{kind}s/{{ref}}": {
            "parameters": [_ORG, ref],
            "patch": _op(
                f"apiRename{title}",
                f"Rename a {kind}; its groups' displayName follows.",
                {200: (f"The {kind}.", "EntryOutput")},
                body="NameInput",
            ),
        },
        f"/api/v1/orgs/{{org}}/{kind}s/{{ref}}/archive": {
            "parameters": [_ORG, ref],
            "post": _op(
                f"apiArchive{title}",
                f"Archive a {kind}: its groups leave SCIM and their memberships end.",
                {200: (f"The {kind}, archived.", "ArchivedEntry")},
                post=True,
            ),
        },
    }


def _directory_paths() -> dict[str, Any]:
    user = _path_param("user", "The user's id, or their userName (ignoring case).")
    group = _path_param("group", "The group's id.")
    search = [
        {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
        for name, schema, description in (
            ("user_name", {"type": "string"}, "Only userNames starting with this, ignoring case."),
            ("name", {"type": "string"}, "Only users whose name contains this, ignoring case."),
            (
                "status",
                {"type": "string", "enum": ["active", "inactive", "removed"]},
                "Only users in this state.",
            ),
        )
    ]
    return {
        "/api/v1/orgs/{org}/groups": {
            "parameters": [_ORG],
            "get": _op(
                "apiListGroups",
                "The Project × Role groups by name, whether the identity provider linked each, member counts.",
                {200: ("A page of groups.", "GroupPage")},
                parameters=_PAGING,
            ),
        },
        "/api/v1/orgs/{org}/groups/{group}/members": {
            "parameters": [_ORG, group],
            "get": _op(
                "apiListMembers",
                "A group's members, in the order they joined.",
                {200: ("A page of members.", "MemberPage")},
                parameters=_PAGING,
            ),
            "post": _op(
                "apiAddMember",
                "Grant in the app: add a member to a group the identity provider has not linked (409 if it has).",
                {201: ("Added.", "GrantOutput"), 200: ("Already a member.", "GrantOutput")},
                body="GrantInput",
                post=True,
            ),
        },
        "/api/v1/orgs/{org}/groups/{group}/members/{user}": {
            "parameters": [_ORG, group, user],
            "delete": _op(
                "apiRemoveMember",
                "Revoke in the app: remove a member of a group the identity provider has not linked.",
                {200: ("Removed, or not a member.", "GrantOutput")},
            ),
        },
        "/api/v1/orgs/{org}/users": {
            "parameters": [_ORG],
            "get": _op(
                "apiListUsers",
                "The organization's users in provisioning order, searched by userName, name and status.",
                {200: ("A page of users.", "UserPage")},
                parameters=[*_PAGING, *search],
            ),
            "post": _op(
                "apiInviteUser",
                "Invite a user from the app: recorded as a SCIM user, so the identity provider's import matches it.",
                {201: ("The user.", "UserDetailOutput")},
                body="InviteInput",
                post=True,
            ),
        },
        "/api/v1/orgs/{org}/users/{user}": {
            "parameters": [_ORG, user],
            "get": _op(
                "apiGetUser", "A user, their status and groups.", {200: ("The user.", "UserDetailOutput")}
            ),
            "delete": _op(
                "apiRemoveUser",
                "Remove a user from the organization, as `scimledger user remove` does.",
                {200: ("The user, removed.", "UserDetailOutput")},
            ),
        },
        "/api/v1/orgs/{org}/users/{user}/restore": {
            "parameters": [_ORG, user],
            "post": _op(
                "apiRestoreUser",
                "Undo an org admin's removal, as `scimledger user restore` does.",
                {200: ("The user, restored.", "UserDetailOutput")},
                post=True,
            ),
        },
        "/api/v1/orgs/{org}/users/{user}/erasure": {
            "parameters": [_ORG, user],
            "post": _op(
                "apiEraseUser",
                "Erase the personal data of a user deleted (by id) or removed from the organization, for ever, "
                "as `scimledger user erase` does; 409 for a member or a user already erased.",
                {200: ("The erasure, as the log records it.", "ErasureOutput")},
                body="ErasureInput",
                post=True,
            ),
        },
        "/api/v1/orgs/{org}/retention": {
            "parameters": [_ORG],
            "get": _op(
                "apiGetRetention",
                "How many days after deletion or removal a user's personal data is erased (null: off).",
                {200: ("The policy.", "RetentionOutput")},
            ),
            "put": _op(
                "apiSetRetention",
                "Set the retention policy, as `scimledger org retention` does; days null turns it off.",
                {200: ("The policy.", "RetentionOutput")},
                body="RetentionInput",
            ),
        },
    }


def schemas() -> dict[str, Any]:
    """The components the paths refer to, each named `Api` + its msgspec type's name."""
    _, definitions = msgspec.json.schema_components(
        [
            ErrorBody,
            OrgInput,
            OrgOutput,
            TokenInput,
            TokenOutput,
            IssuedToken,
            NameInput,
            EntryOutput,
            CreatedEntry,
            ArchivedEntry,
            GroupOutput,
            MemberOutput,
            GrantInput,
            GrantOutput,
            UserOutput,
            UserDetailOutput,
            InviteInput,
            ErasureInput,
            ErasureOutput,
            RetentionInput,
            RetentionOutput,
            EventPage,
            AccessOutput,
            *portal_routes.SCHEMA_TYPES,
            ConnectionOutput,
        ],
        ref_template=_REF,
    )
    return {
        **{"Api" + name: schema for name, schema in definitions.items()},
        "ApiTokenPage": _page_of("TokenOutput"),
        "ApiEntryPage": _page_of("EntryOutput"),
        "ApiGroupPage": _page_of("GroupOutput"),
        "ApiMemberPage": _page_of("MemberOutput"),
        "ApiUserPage": _page_of("UserOutput"),
    }
