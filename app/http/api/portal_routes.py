"""`POST /api/v1/orgs/{org}/portal-links`: a one-time sign-in link to the console for one of the
organization's people, which the host app sends them to (app/services/console.py); and
`DELETE /api/v1/orgs/{org}/portal-sessions`: sign every console session of the organization out."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import decode_body, idempotent, org_access
from app.http.api.responses import JsonResponse
from app.http.endpoint import services_of
from app.http.responses import service_root
from app.services.console import MAX_LABEL_LENGTH, Intent


class PortalLinkInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`intent`: what the session may do: `setup` (connect the identity provider, its SCIM tokens), `admin`
    (setup, and the organization's users, groups, catalog and webhooks) or `audit` (read-only history,
    reviews, the timeline). `label`: who the link is for; the console's actions are recorded with the actor
    `console:<label>`."""

    intent: Intent
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_LENGTH)]


class PortalLinkOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    intent: Intent
    label: str
    # The link itself, usable once until `expires_at`: send the person there. Null when the answer is a
    # replay of its Idempotency-Key (header Idempotent-Secret-Withheld): ask for another.
    url: str | None
    expires_at: datetime.datetime


class SessionsRevoked(msgspec.Struct, frozen=True):
    revoked: int


async def create_portal_link(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])

    async def create(body: bytes) -> Response:
        wanted = decode_body(body, PortalLinkInput)
        link = await services_of(request).console.issue_link(
            access.org_id, wanted.intent, wanted.label, access.principal.actor
        )
        url = service_root(request) + link.path
        return JsonResponse(
            PortalLinkOutput(link.link_id, link.intent, link.label, url, link.expires_at), status_code=201
        )

    return await idempotent(request, access.principal, create, secret="url")


async def revoke_portal_sessions(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    revoked = await services_of(request).console.revoke_sessions(access.org_id)
    return JsonResponse(SessionsRevoked(revoked))


ROUTES = [
    Route("/orgs/{org}/portal-links", create_portal_link, methods=["POST"]),
    Route("/orgs/{org}/portal-sessions", revoke_portal_sessions, methods=["DELETE"]),
]
SCHEMA_TYPES: list[type[msgspec.Struct]] = [PortalLinkInput, PortalLinkOutput, SessionsRevoked]


def path_description(
    org: dict[str, Any], body: dict[str, Any], responses: Any, idempotency_key: dict[str, Any]
) -> dict[str, Any]:
    """The routes' part of /openapi.json; `responses(success, *errors)` writes their answers as the API's
    description does for every route."""
    return {
        "/api/v1/orgs/{org}/portal-links": {
            "parameters": [org],
            "post": {
                "operationId": "apiCreatePortalLink",
                "summary": "A one-time sign-in link to the console (setup, admin or audit) for one person; "
                "it expires after SCIMLEDGER_CONSOLE_LINK_SECONDS.",
                "parameters": [idempotency_key],
                "requestBody": body,
                "responses": responses(
                    {201: ("The link, shown once.", "PortalLinkOutput")}, 400, 404, 413, 422
                ),
            },
        },
        "/api/v1/orgs/{org}/portal-sessions": {
            "parameters": [org],
            "delete": {
                "operationId": "apiRevokePortalSessions",
                "summary": "Sign every console session of the organization out.",
                "responses": responses({200: ("How many sessions ended.", "SessionsRevoked")}, 404),
            },
        },
    }
