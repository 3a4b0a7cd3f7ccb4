"""/audit: the auditors' queries as JSON, for tokens of the auditor scope, which read this and nothing else.

Everything is read from the log, in one repeatable-read snapshot per request, never from projections.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http import ScimResponse, authenticate, services_of
from app.tenancy import Principal
from projections import audit, seals
from scim.errors import invalid_value

AUDITOR = "auditor"


def _instant(request: Request, name: str, required: bool = False) -> datetime.datetime | None:
    text = request.query_params.get(name)
    if not text:
        if required:
            raise invalid_value(f"The '{name}' parameter is required (an ISO 8601 time).")
        return None
    try:
        return audit.parse_instant(text)
    except ValueError as error:
        raise invalid_value(f"'{name}': {error}") from error


def window_error(
    start: datetime.datetime | None, end: datetime.datetime | None, first: str, second: str
) -> str | None:
    """Why a window that ends before it starts is refused, naming its bounds as the caller gave them (the
    CLI's `--from`, the API's `from`); None for a window in order or open at either end."""
    if start is None or end is None or start <= end:
        return None
    return (
        f"{first} ({start.isoformat()}) is after {second} ({end.isoformat()}): the window is reversed. "
        f"Give the earlier time as {first}."
    )


def _window(start: datetime.datetime | None, end: datetime.datetime | None, first: str, second: str) -> None:
    problem = window_error(start, end, f"'{first}'", f"'{second}'")
    if problem is not None:
        raise invalid_value(problem)


def _id(request: Request, name: str) -> uuid.UUID | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError as error:
        raise invalid_value(f"'{name}' takes an id, not '{text}'.") from error


async def _auditor(request: Request) -> Principal:
    # Before any parameter is looked at: a caller without the right token learns nothing of the API.
    return await authenticate(request, scope=AUDITOR)


async def _read(request: Request, principal: Principal, query: Any) -> Any:
    """Run `query(connection, org_id, prefix)` for the auditor's organization in one consistent snapshot."""
    services = services_of(request)
    async with (
        services.pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        return await query(connection, principal.org_id, services.settings.group_prefix)


async def verify(request: Request) -> Response:
    principal = await _auditor(request)
    head_text = request.query_params.get("head")
    try:
        expected = seals.Head.parse(head_text) if head_text else None
    except ValueError as error:
        raise invalid_value(str(error)) from error
    limit = datetime.timedelta(seconds=services_of(request).settings.audit_max_unsealed_seconds)
    verdict = await _read(
        request,
        principal,
        lambda connection, org_id, _: seals.verify(connection, org_id, expected, max_unsealed_age=limit),
    )
    return ScimResponse(
        {
            "intact": verdict.intact,
            "checked": verdict.checked,
            "unsealed": verdict.unsealed,
            "problem": verdict.problem,
        }
    )


async def head(request: Request) -> Response:
    principal = await _auditor(request)
    latest = await _read(request, principal, lambda connection, org_id, _: seals.head(connection, org_id))
    return ScimResponse({"head": str(latest) if latest else None})


async def history(request: Request) -> Response:
    principal = await _auditor(request)
    user, group, actor = _id(request, "user"), _id(request, "group"), request.query_params.get("actor")
    since, until = _instant(request, "since"), _instant(request, "until")
    _window(since, until, "since", "until")
    entries = await _read(
        request,
        principal,
        lambda connection, org_id, prefix: audit.history(
            connection, org_id, prefix, user=user, group=group, actor=actor, since=since, until=until
        ),
    )
    return ScimResponse({"events": [entry.to_row() for entry in entries]})


async def as_of(request: Request) -> Response:
    principal = await _auditor(request)
    at = _instant(request, "at", required=True)
    assert at is not None
    snapshot = await _read(
        request, principal, lambda connection, org_id, prefix: audit.as_of(connection, org_id, at, prefix)
    )
    return ScimResponse({"at": at.isoformat(), **snapshot.to_report()})


async def access(request: Request) -> Response:
    principal = await _auditor(request)
    start, end = _instant(request, "from", required=True), _instant(request, "to", required=True)
    assert start is not None
    assert end is not None
    _window(start, end, "from", "to")
    params = request.query_params
    intervals = await _read(
        request,
        principal,
        lambda connection, org_id, prefix: audit.access(
            connection,
            org_id,
            prefix,
            start,
            end,
            project=params.get("project"),
            role=params.get("role"),
            user=params.get("user"),
        ),
    )
    return ScimResponse(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "intervals": [interval.to_row() for interval in intervals],
        }
    )


ROUTES = [
    Route("/verify", verify, methods=["GET"]),
    Route("/head", head, methods=["GET"]),
    Route("/history", history, methods=["GET"]),
    Route("/as-of", as_of, methods=["GET"]),
    Route("/access", access, methods=["GET"]),
]
