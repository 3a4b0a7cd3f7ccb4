"""`/api/v1/orgs/{org}/tokens`: an organization's tokens, listed (never their secrets), issued (the token is in
the answer, once) and revoked; by a platform token, or by the organization's own admin token."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import decode_body, idempotent, org_access, page, page_after, page_limit, path_id
from app.http.api.responses import JsonResponse
from app.http.endpoint import services_of
from app.services import tenancy


class TokenOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    scope: str
    label: str | None
    state: Literal["active", "revoked"]
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None
    revoked_at: datetime.datetime | None


def _shown(info: tenancy.TokenInfo) -> TokenOutput:
    state: Literal["active", "revoked"] = "revoked" if info.revoked_at else "active"
    return TokenOutput(
        info.token_id, info.scope, info.label, state, info.created_at, info.last_used_at, info.revoked_at
    )


class TokenInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # An organization's scopes: a platform token is issued by the CLI alone.
    scope: Literal["scim", "auditor", "admin"] = "scim"
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class IssuedToken(msgspec.Struct, frozen=True):
    id: uuid.UUID
    scope: str
    label: str | None
    # The bearer token itself, shown in this answer only: only its hash is kept. Null when the answer is a
    # replay of its Idempotency-Key (header Idempotent-Secret-Withheld): revoke it by id and issue another.
    token: str | None


async def list_tokens(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    limit = page_limit(request)
    after = page_after(request, "tokens", tenancy.TokenKey)
    async with services_of(request).pool.acquire() as connection:
        tokens = await tenancy.list_tokens(connection, access.org_id, after, limit + 1)
    return page(
        tokens, limit, "tokens", lambda info: tenancy.TokenKey(info.created_at, info.token_id), _shown
    )


async def issue_token(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])

    async def issue(body: bytes) -> Response:
        wanted = decode_body(body, TokenInput)
        async with services_of(request).pool.acquire() as connection:
            token_id, token = await tenancy.issue_token(
                connection, access.org_id, wanted.scope, wanted.label, access.principal.actor
            )
        return JsonResponse(IssuedToken(token_id, wanted.scope, wanted.label, token), status_code=201)

    return await idempotent(request, access.principal, issue, secret="token")


async def revoke_token(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    token_id = path_id(request, "token_id", "token")
    async with services_of(request).pool.acquire() as connection:
        await tenancy.revoke_token(connection, token_id, access.org_id, access.principal.actor)
    return Response(status_code=204)


ROUTES = [
    Route("/orgs/{org}/tokens", list_tokens, methods=["GET"]),
    Route("/orgs/{org}/tokens", issue_token, methods=["POST"]),
    Route("/orgs/{org}/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
