"""`GET /api/v1/orgs/{org}/connection`: the identity provider's connection status, as the console's Setup page
shows it (app/services/connection_status.py): when its SCIM tokens last called, and its latest errors."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import DEFAULT_LIMIT, MAX_LIMIT, org_access, page_limit
from app.http.api.responses import JsonResponse
from app.http.endpoint import services_of
from app.services.connection_status import CallError, ConnectionStatus


class ConnectionToken(msgspec.Struct, frozen=True):
    """An active SCIM token; `last_used_at` to the minute, null if it never called."""

    id: uuid.UUID
    label: str | None
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None


class ScimErrorOutput(msgspec.Struct, frozen=True):
    """A SCIM request answered 4xx or 5xx. `route` is the route's template, never the path sent; `subject`
    names whom it was about (`subject_kind` user: a userName, group: a displayName); `members`, the members it
    named that are no users; `sentence`, all of it for an IT admin."""

    recorded_at: datetime.datetime
    sentence: str
    status: int
    scim_type: str | None
    detail: str
    method: str
    route: str
    subject_kind: str | None
    subject: str | None
    resource_id: uuid.UUID | None
    members: list[str]
    token_id: uuid.UUID
    token_label: str | None
    request_id: str | None


class StatusCountOutput(msgspec.Struct, frozen=True):
    status: int
    count: int


class ConnectionOutput(msgspec.Struct, frozen=True):
    """`last_call_at`: the latest call of any active SCIM token (null: none called); `errors`: the newest
    first; `errors_last_day`: every error of the last 24 hours by status, counted by the hour (so up to 25
    hours back), including those no longer kept."""

    checked_at: datetime.datetime
    last_call_at: datetime.datetime | None
    tokens: list[ConnectionToken]
    errors: list[ScimErrorOutput]
    errors_last_day: list[StatusCountOutput]


def _error(error: CallError) -> ScimErrorOutput:
    return ScimErrorOutput(
        error.recorded_at,
        error.sentence,
        error.status,
        error.scim_type,
        error.detail,
        error.method,
        error.route,
        error.subject_kind,
        error.subject,
        error.resource_id,
        list(error.members),
        error.token_id,
        error.token_label,
        error.request_id,
    )


def _shown(status: ConnectionStatus) -> ConnectionOutput:
    return ConnectionOutput(
        status.checked_at,
        status.last_call_at,
        [ConnectionToken(t.token_id, t.label, t.created_at, t.last_used_at) for t in status.tokens],
        [_error(error) for error in status.errors],
        [StatusCountOutput(count.status, count.count) for count in status.errors_last_day],
    )


async def show_connection(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    limit = page_limit(request)
    status = await services_of(request).connection_status.status(access.org_id, limit)
    return JsonResponse(_shown(status))


ROUTES = [Route("/orgs/{org}/connection", show_connection, methods=["GET"])]


def path_description(org: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
    """The route's part of /openapi.json; `org` is the path's parameter and `responses` its answers, as the
    API's description (app/http/api/description.py) writes them for every route."""
    return {
        "/api/v1/orgs/{org}/connection": {
            "parameters": [org],
            "get": {
                "operationId": "apiConnectionStatus",
                "summary": "The identity provider's connection status: when each active SCIM token last "
                "called, the latest SCIM errors (each in a sentence naming whom it was about) and the "
                "errors of the last 24 hours by status.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        "description": f"The newest errors shown, {DEFAULT_LIMIT} when absent (at most "
                        "the SCIMLEDGER_SCIM_ERRORS_KEPT an organization keeps).",
                    }
                ],
                "responses": responses,
            },
        }
    }
