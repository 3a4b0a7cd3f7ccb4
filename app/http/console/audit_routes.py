"""Audit, for the auditor: the seal chain's state (its head, to keep outside the service, and a verification on
demand), and the section's other pages (history, access review and its exports, timeline, as-of), each in a
module of its own. Read-only: an audit session changes nothing."""

from __future__ import annotations

import datetime
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console import (
    audit_as_of_routes,
    audit_history_routes,
    audit_review_routes,
    audit_timeline_routes,
)
from app.http.console.audit_forms import SECTION, read_snapshot
from app.http.console.pages import render
from app.http.console.session import checked_form, console_session
from app.http.endpoint import services_of
from app.services.console import ConsoleSession
from projections import seals


async def _seals_page(request: Request, session: ConsoleSession, verdict: seals.Verdict | None) -> Response:
    org_id: uuid.UUID = session.org_id
    latest = await read_snapshot(request, lambda connection: seals.head(connection, org_id))
    return render(request, "audit_seals.html", session, head=str(latest) if latest else None, verdict=verdict)


async def seals_page(request: Request) -> Response:
    return await _seals_page(request, await console_session(request, SECTION), None)


async def verify_now(request: Request) -> Response:
    """Recompute the chain from the events, as `scimledger audit verify` does. A POST (it reads the whole
    log of the organization), but it changes nothing."""
    session = await console_session(request, SECTION)
    await checked_form(request, session)
    limit = datetime.timedelta(seconds=services_of(request).settings.audit_max_unsealed_seconds)
    verdict = await read_snapshot(
        request, lambda connection: seals.verify(connection, session.org_id, max_unsealed_age=limit)
    )
    return await _seals_page(request, session, verdict)


ROUTES = [
    Route("/console/audit", seals_page, methods=["GET"]),
    Route("/console/audit/verify", verify_now, methods=["POST"]),
    *audit_history_routes.ROUTES,
    *audit_review_routes.ROUTES,
    *audit_timeline_routes.ROUTES,
    *audit_as_of_routes.ROUTES,
]
