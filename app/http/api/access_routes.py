"""`GET /api/v1/orgs/{org}/access?user=…&project=…&role=…[&at=…]`: may the user act as the role in the project,
now or at `at`; since when, and granted by whom (app/services/access.py).

On the host app's hot path: with an admin token naming its organization by id (no lookup, see
`edge.org_access`), a cached token (SCIMLEDGER_TOKEN_CACHE_SECONDS) and ids for the user, project and role, a
request reads the database once, by an index. A platform token adds the organization's lookup; names add an
index probe each, in the same statement.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import org_access, query_text, query_values
from app.http.api.responses import ApiError, JsonResponse
from app.http.endpoint import parse_uuid, services_of
from scim.instants import parse_instant


class AccessOutput(msgspec.Struct, frozen=True):
    """`since`, `granted_by` (a token, an admin or a reactor, as `audit access` names them), `request_id` (the
    request that granted it) and `cause` (how: "push" when the identity provider pushed it) are the grant's
    that holds, and null when `allowed` is false. `at` is the instant asked about, null for now. `reason` says
    why a check of now is denied although the grant is held, since the audit's membership ends only when the
    reactor records it: "user_inactive" (the identity provider deactivated them), "user_removed" (removed
    from the organization) or "user_deleted"; null otherwise, and always null with `at` (the audit's answer)."""

    allowed: bool
    user_id: uuid.UUID
    project_id: uuid.UUID
    role_id: uuid.UUID
    at: datetime.datetime | None
    since: datetime.datetime | None
    granted_by: str | None
    request_id: str | None
    cause: str | None
    reason: str | None


def _reference(request: Request, name: str, what: str) -> uuid.UUID | str:
    """The id, or else the name, in parameter `name` (the service reads a text that is no id as a name)."""
    value = query_text(request, name)  # refuses U+0000, which no id or name can hold
    if value is None:
        raise ApiError(400, f"The '{name}' parameter is required: {what}.")
    try:
        return parse_uuid(value)
    except ValueError:
        return value


def _at(request: Request) -> datetime.datetime | None:
    text = query_values(request).get("at")
    if not text:
        return None
    try:
        return parse_instant(text)
    except ValueError as error:
        raise ApiError(400, f"'at': {error}") from error


async def check_access(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    user = _reference(request, "user", "the user's id, or their userName")
    project = _reference(request, "project", "the project's id, or its name")
    role = _reference(request, "role", "the role's id, or its name")
    at = _at(request)
    decision = await services_of(request).access.check(access.org_id, user, project, role, at)
    return JsonResponse(
        AccessOutput(
            decision.allowed,
            decision.user_id,
            decision.project_id,
            decision.role_id,
            at,
            decision.since,
            decision.granted_by,
            decision.request_id,
            decision.cause,
            decision.reason,
        )
    )


ROUTES = [Route("/orgs/{org}/access", check_access, methods=["GET"])]


def _query(name: str, description: str, required: bool = True, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": {"type": "string", "minLength": 1, **schema},
        "description": description,
    }


def path_description(org: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
    """The route's part of /openapi.json; `org` is the path's parameter and `responses` its answers, as the
    API's description (app/http/api/description.py) writes them for every route."""
    return {
        "/api/v1/orgs/{org}/access": {
            "parameters": [org],
            "get": {
                "operationId": "apiCheckAccess",
                "summary": "May the user act as the role in the project, now or at an instant; since when, "
                "and granted by whom. One indexed read with ids. At an instant: the answer `audit access` gives; now: "
                "also the user must be active, a member of the organization and not deleted (`reason` says "
                "which failed), as their removal from the group waits for the reactor.",
                "parameters": [
                    _query("user", "The user's id, or their userName (ignoring case)."),
                    _query("project", "The project's id, or the name of a live project (ignoring case)."),
                    _query("role", "The role's id, or the name of a live role (ignoring case)."),
                    _query(
                        "at",
                        "An ISO 8601 instant to ask about instead of now (ask about the past by ids: names "
                        "are today's).",
                        required=False,
                        format="date-time",
                    ),
                ],
                "responses": responses,
            },
        }
    }
