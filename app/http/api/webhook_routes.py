"""`/api/v1/orgs/{org}/webhooks`: an organization's webhook endpoints (app/services/webhooks.py), by its admin
token or a platform token. The signing secret is in the answer to a creation and to a rotation, and nowhere
else. Deliveries follow Standard Webhooks (app/services/webhook_delivery.py)."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import (
    OrgAccess,
    decode_body,
    idempotent,
    org_access,
    page,
    page_after,
    page_limit,
    path_id,
    read_body,
)
from app.http.api.responses import JsonResponse
from app.http.endpoint import services_of
from app.services.event_feed import decode_cursor
from app.services.webhooks import DeliveryAttempt, WebhookEndpoint
from domain.errors import InvalidWebhook
from eventstore.records import LOG_START

EventTypes = Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=100)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class WebhookInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: Url
    # Public event types ('user.created') or families ('user.*'); empty or absent: every event.
    event_types: EventTypes = []
    description: Description = ""


class WebhookChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a PATCH changes: the fields given, the others left as they are."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET


class ReplayInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where to deliver again from, one of: `from_webhook_id`, the `webhook-id` (the event's `id`) of the first
    event to deliver again; or `after`, a cursor of the event feed (its `next_cursor`), null for the start of
    the log. Every later event follows, in order."""

    from_webhook_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    after: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType | None = msgspec.UNSET


class WebhookOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    state: str
    # Why it was disabled, for its owner: the event it gave up on and the last attempt's error.
    disabled_reason: str | None
    # Failed attempts at its next event, and when the next one is due.
    failed_attempts: int
    next_attempt_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class CreatedWebhook(msgspec.Struct, frozen=True):
    webhook: WebhookOutput
    # The signing secret (Standard Webhooks' whsec_ format), in this answer only: only its encryption is kept.
    # Null when the answer is a replay of its Idempotency-Key (header Idempotent-Secret-Withheld): rotate it.
    secret: str | None


class RotatedSecret(msgspec.Struct, frozen=True):
    # The new signing secret, in this answer only. The previous one signs too for 24 hours. Null when the
    # answer is a replay of its Idempotency-Key (header Idempotent-Secret-Withheld).
    secret: str | None


class DeliveryOutput(msgspec.Struct, frozen=True):
    id: int
    webhook_id: str
    event_type: str
    attempt: int
    attempted_at: datetime.datetime
    duration_ms: int
    status: int | None
    error: str | None
    succeeded: bool


class _WebhookKey(msgspec.Struct, frozen=True):
    id: uuid.UUID


class _DeliveryKey(msgspec.Struct, frozen=True):
    id: int


def _shown(endpoint: WebhookEndpoint) -> WebhookOutput:
    return WebhookOutput(
        endpoint.endpoint_id,
        endpoint.url,
        endpoint.event_types,
        endpoint.description,
        endpoint.state,
        endpoint.disabled_reason,
        endpoint.attempts,
        endpoint.next_attempt_at,
        endpoint.created_at,
        endpoint.updated_at,
    )


def _delivery(attempt: DeliveryAttempt) -> DeliveryOutput:
    return DeliveryOutput(
        attempt.attempt_id,
        attempt.webhook_id,
        attempt.event_type,
        attempt.attempt,
        attempt.attempted_at,
        attempt.duration_ms,
        attempt.status,
        attempt.error,
        attempt.succeeded,
    )


def _endpoint_id(request: Request) -> uuid.UUID:
    return path_id(request, "webhook", "webhook")


async def list_webhooks(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    limit = page_limit(request)
    after = page_after(request, "webhooks", _WebhookKey)
    endpoints = await services_of(request).webhooks.endpoints(
        access.org_id, after.id if after else None, limit + 1
    )
    return page(endpoints, limit, "webhooks", lambda endpoint: _WebhookKey(endpoint.endpoint_id), _shown)


async def create_webhook(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])

    async def create(body: bytes) -> Response:
        wanted = decode_body(body, WebhookInput)
        created = await services_of(request).webhooks.create(
            access.org_id, wanted.url, wanted.event_types, wanted.description
        )
        return JsonResponse(CreatedWebhook(_shown(created.endpoint), created.secret), status_code=201)

    return await idempotent(request, access.principal, create, secret="secret")


async def get_webhook(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    endpoint = await services_of(request).webhooks.get(access.org_id, _endpoint_id(request))
    return JsonResponse(_shown(endpoint))


async def update_webhook(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    endpoint_id = _endpoint_id(request)
    change = decode_body(await read_body(request), WebhookChange)
    endpoint = await services_of(request).webhooks.update(
        access.org_id,
        endpoint_id,
        url=change.url if change.url is not msgspec.UNSET else None,
        event_types=change.event_types if change.event_types is not msgspec.UNSET else None,
        description=change.description if change.description is not msgspec.UNSET else None,
    )
    return JsonResponse(_shown(endpoint))


async def delete_webhook(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    await services_of(request).webhooks.delete(access.org_id, _endpoint_id(request))
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    endpoint_id = _endpoint_id(request)

    async def rotate(_: bytes) -> Response:
        secret = await services_of(request).webhooks.rotate_secret(access.org_id, endpoint_id)
        return JsonResponse(RotatedSecret(secret))

    return await idempotent(request, access.principal, rotate, secret="secret")


async def pause_webhook(request: Request) -> Response:
    return await _state_change(request, await org_access(request, request.path_params["org"]), pause=True)


async def resume_webhook(request: Request) -> Response:
    return await _state_change(request, await org_access(request, request.path_params["org"]), pause=False)


async def _state_change(request: Request, access: OrgAccess, pause: bool) -> Response:
    endpoint_id = _endpoint_id(request)
    webhooks = services_of(request).webhooks

    async def change(_: bytes) -> Response:
        changed = webhooks.pause if pause else webhooks.resume
        return JsonResponse(_shown(await changed(access.org_id, endpoint_id)))

    return await idempotent(request, access.principal, change)


async def replay_webhook(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    endpoint_id = _endpoint_id(request)
    webhooks = services_of(request).webhooks

    async def replay(body: bytes) -> Response:
        wanted = decode_body(body, ReplayInput)
        await webhooks.get(access.org_id, endpoint_id)  # 404 for an unknown endpoint before the event
        if (wanted.from_webhook_id is msgspec.UNSET) == (wanted.after is msgspec.UNSET):
            raise InvalidWebhook(
                "Give where to replay from: either from_webhook_id or after (a feed cursor)."
            )
        if wanted.from_webhook_id is not msgspec.UNSET:
            after = await webhooks.position_before(access.org_id, wanted.from_webhook_id)
        else:
            after = decode_cursor(wanted.after) if isinstance(wanted.after, str) else LOG_START
        return JsonResponse(_shown(await webhooks.replay(access.org_id, endpoint_id, after)))

    return await idempotent(request, access.principal, replay)


async def list_deliveries(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    limit = page_limit(request)
    before = page_after(request, "deliveries", _DeliveryKey)
    attempts = await services_of(request).webhooks.deliveries(
        access.org_id, _endpoint_id(request), before.id if before else None, limit + 1
    )
    return page(attempts, limit, "deliveries", lambda attempt: _DeliveryKey(attempt.attempt_id), _delivery)


ROUTES = [
    Route("/orgs/{org}/webhooks", list_webhooks, methods=["GET"]),
    Route("/orgs/{org}/webhooks", create_webhook, methods=["POST"]),
    Route("/orgs/{org}/webhooks/{webhook}", get_webhook, methods=["GET"]),
    Route("/orgs/{org}/webhooks/{webhook}", update_webhook, methods=["PATCH"]),
    Route("/orgs/{org}/webhooks/{webhook}", delete_webhook, methods=["DELETE"]),
    Route("/orgs/{org}/webhooks/{webhook}/rotate", rotate_secret, methods=["POST"]),
    Route("/orgs/{org}/webhooks/{webhook}/pause", pause_webhook, methods=["POST"]),
    Route("/orgs/{org}/webhooks/{webhook}/resume", resume_webhook, methods=["POST"]),
    Route("/orgs/{org}/webhooks/{webhook}/replay", replay_webhook, methods=["POST"]),
    Route("/orgs/{org}/webhooks/{webhook}/deliveries", list_deliveries, methods=["GET"]),
]
