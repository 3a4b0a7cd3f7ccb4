"""Admin, webhooks: the organization's endpoints and their state, each with its recent deliveries (status,
attempts, last error), paused and resumed. The same service as the management API's `/webhooks`
(app/services/webhooks.py); creating one, and its secret, stay the host app's (the API and the CLI)."""

from __future__ import annotations

import uuid

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console.listing import PAGE_SIZE, cursor_of, paged
from app.http.console.pages import render
from app.http.console.session import checked_form, console_session
from app.http.endpoint import services_of
from app.services.console import ConsoleSession
from app.services.webhooks import MAX_ACTIVE_ENDPOINTS, WebhookEndpoint
from domain.errors import InvalidWebhook, NotFound

SECTION = "admin"


class EndpointKey(msgspec.Struct, frozen=True):
    id: uuid.UUID


class DeliveryKey(msgspec.Struct, frozen=True):
    attempt_id: int


async def webhooks_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    after = cursor_of(request, "console-webhooks", EndpointKey)
    endpoints = await services_of(request).webhooks.endpoints(
        session.org_id, after.id if after else None, PAGE_SIZE + 1
    )
    shown, next_page = paged(
        request, endpoints, "console-webhooks", lambda item: EndpointKey(item.endpoint_id)
    )
    return render(
        request,
        "webhooks.html",
        session,
        endpoints=shown,
        next_page=next_page,
        first_page=after is None,
        max_active=MAX_ACTIVE_ENDPOINTS,
    )


def _endpoint_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["webhook"])
    except ValueError:
        raise NotFound("No webhook endpoint with this id in this organization.") from None


async def _webhook_page(
    request: Request,
    session: ConsoleSession,
    endpoint: WebhookEndpoint | None = None,
    notice: str | None = None,
    problem: str | None = None,
) -> Response:
    webhooks = services_of(request).webhooks
    endpoint_id = _endpoint_id(request)
    # Only the session's organization's endpoint: another's is not found.
    endpoint = endpoint or await webhooks.get(session.org_id, endpoint_id)
    before = cursor_of(request, "console-deliveries", DeliveryKey)
    attempts = await webhooks.deliveries(
        session.org_id, endpoint_id, before.attempt_id if before else None, PAGE_SIZE + 1
    )
    shown, older = paged(
        request,
        attempts,
        "console-deliveries",
        lambda attempt: DeliveryKey(attempt.attempt_id),
        path=f"/console/webhooks/{endpoint_id}",  # a pause's or resume's page pages on the endpoint's
    )
    return render(
        request,
        "webhook.html",
        session,
        status_code=409 if problem else 200,
        endpoint=endpoint,
        deliveries=shown,
        older=older,
        first_page=before is None,
        notice=notice,
        problem=problem,
    )


async def webhook_page(request: Request) -> Response:
    return await _webhook_page(request, await console_session(request, SECTION))


async def pause_webhook(request: Request) -> Response:
    session = await console_session(request, SECTION)
    await checked_form(request, session)
    paused = await services_of(request).webhooks.pause(session.org_id, _endpoint_id(request))
    return await _webhook_page(
        request, session, paused, notice="Paused: events wait in order, and go out when you resume."
    )


async def resume_webhook(request: Request) -> Response:
    session = await console_session(request, SECTION)
    await checked_form(request, session)
    try:
        resumed = await services_of(request).webhooks.resume(session.org_id, _endpoint_id(request))
    except InvalidWebhook as error:
        return await _webhook_page(request, session, problem=str(error))
    return await _webhook_page(
        request, session, resumed, notice="Resumed: delivery goes on from the event it stopped at."
    )


ROUTES = [
    Route("/console/webhooks", webhooks_page, methods=["GET"]),
    Route("/console/webhooks/{webhook}", webhook_page, methods=["GET"]),
    Route("/console/webhooks/{webhook}/pause", pause_webhook, methods=["POST"]),
    Route("/console/webhooks/{webhook}/resume", resume_webhook, methods=["POST"]),
]
