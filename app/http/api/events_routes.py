"""The event feed over HTTP (docs/events.md): `GET /api/v1/orgs/{org}/events` (an organization's events, for its
admin token or a platform token) and `GET /api/v1/events` (every organization's, platform tokens only).

    ?after=CURSOR&limit=N&types=user.created,group.member_added&wait=SECONDS

answered `{"data": [public events], "next_cursor": "…"}` by app/services/event_feed.py, which also refuses what
it cannot answer (a cursor it did not hand out, an unknown type, a limit or wait out of range: 400).
"""

from __future__ import annotations

import math
import uuid

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import PLATFORM_ONLY, api_principal, org_access, platform_admission
from app.http.api.responses import ApiError, JsonResponse
from app.http.endpoint import services_of
from app.services.event_feed import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_SECONDS
from app.services.read_replica import http_instant
from projections.public_events import AnyPublicEvent


class EventPage(msgspec.Struct, frozen=True):
    """The answer's shape, for the description: the service's FeedPage, with each event's type spelled out."""

    data: list[AnyPublicEvent]
    next_cursor: str


async def org_events(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    return await _read(request, access.org_id)


async def platform_events(request: Request) -> Response:
    principal = await api_principal(request, PLATFORM_ONLY)
    platform_admission(request, principal)
    return await _read(request, None)


async def _read(request: Request, org_id: uuid.UUID | None) -> Response:
    query = request.query_params
    limit = int(_number(query.get("limit"), "limit", DEFAULT_LIMIT, whole=True))
    wait = _number(query.get("wait"), "wait", 0.0, whole=False)
    types = [name.strip() for name in query.get("types", "").split(",") if name.strip()] or None
    services = services_of(request)
    if wait > 0:
        # A waiting reader holds no connection while it waits, and each of its reads is one short indexed
        # query: counted as work in progress for the whole wait, a host app's long poll would take the slot
        # its organization's identity provider needs (one slot, on a 2-core machine).
        services.admission.release(request.scope)
    sourced = await services.feed.read_page(org_id, query.get("after") or None, limit, types, wait)
    if sourced.replica_as_of is None:
        return JsonResponse(sourced.page)
    # Read from the replica (a catch-up far behind the head): said, with the commit it had replayed up to.
    return JsonResponse(
        sourced.page, headers={"Data-As-Of": http_instant(sourced.replica_as_of), "Data-Source": "replica"}
    )


def _number(text: str | None, name: str, default: float, *, whole: bool) -> float:
    if text is None or text == "":
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        shown = "a whole number" if whole else "a number of seconds"
        raise ApiError(400, f"{name} must be {shown}; it was '{text}'.")
    return value


ROUTES = [
    Route("/orgs/{org}/events", org_events, methods=["GET"]),
    Route("/events", platform_events, methods=["GET"]),
]

# The query parameters, as the description gives them.
PARAMETERS = [
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "The previous page's next_cursor, unchanged; absent to read from the start of the log.",
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "description": f"Events in the page, {DEFAULT_LIMIT} when absent.",
    },
    {
        "name": "types",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Comma-separated public event types (docs/events.md); every type when absent.",
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
        "description": "Seconds to wait for an event when there is none yet after the cursor; 0 when absent.",
    },
]
