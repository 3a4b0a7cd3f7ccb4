"""`/api/v1/orgs`: creating an organization (platform tokens) and reading one."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import (
    PLATFORM_ONLY,
    api_principal,
    decode_body,
    idempotent,
    org_access,
    platform_admission,
)
from app.http.api.responses import JsonResponse
from app.http.endpoint import services_of
from app.services import tenancy


class OrgInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class OrgOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str


async def create_org(request: Request) -> Response:
    principal = await api_principal(request, PLATFORM_ONLY)
    platform_admission(request, principal)

    async def create(body: bytes) -> Response:
        wanted = decode_body(body, OrgInput)
        async with services_of(request).pool.acquire() as connection:
            org = await tenancy.create_org(connection, wanted.name)
        return JsonResponse(OrgOutput(org.org_id, org.name), status_code=201)

    return await idempotent(request, principal, create)


async def show_org(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    async with services_of(request).pool.acquire() as connection:
        org = await tenancy.find_org(connection, str(access.org_id))
    return JsonResponse(OrgOutput(org.org_id, org.name))


ROUTES = [
    Route("/orgs", create_org, methods=["POST"]),
    Route("/orgs/{org}", show_org, methods=["GET"]),
]
