"""`/api/v1/orgs/{org}/groups/{group}/members`: access granted in the app. An org admin adds or removes a
member of a group the identity provider has not linked; once it is linked, its membership is the identity
provider's (Okta's Push Groups would undo the app's change at its next push), and a change is refused (409)
saying so (app/services/groups.py, GroupService.grant)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.catalog_routes import group_id_of
from app.http.api.edge import OrgAccess, decode_body, idempotent, org_access, path_text
from app.http.api.responses import JsonResponse
from app.http.endpoint import services_of
from domain.errors import NotFound
from projections import user_directory


class GrantInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The user's id, or their userName.
    user: Annotated[str, msgspec.Meta(min_length=1)]


class GrantOutput(msgspec.Struct, frozen=True):
    group_id: uuid.UUID
    user_id: uuid.UUID
    member: bool
    # False when the request changed nothing (the user was already a member, or already not one).
    changed: bool


async def _user_id(request: Request, access: OrgAccess, reference: str) -> uuid.UUID:
    async with services_of(request).pool.acquire() as connection:
        user_id = await user_directory.find_user(connection, access.org_id, reference)
    if user_id is None:
        raise NotFound(f"No user '{reference}' (by id or userName) in this organization.")
    return user_id


async def add_member(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    group_id = group_id_of(request)

    async def add(body: bytes) -> Response:
        user_id = await _user_id(request, access, decode_body(body, GrantInput).user)
        changed = await services_of(request).groups.grant(
            access.org_id, group_id, user_id, True, access.metadata
        )
        return JsonResponse(
            GrantOutput(group_id, user_id, True, changed), status_code=201 if changed else 200
        )

    return await idempotent(request, access.principal, add)


async def remove_member(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    group_id = group_id_of(request)
    user_id = await _user_id(request, access, path_text(request, "user"))
    changed = await services_of(request).groups.grant(
        access.org_id, group_id, user_id, False, access.metadata
    )
    return JsonResponse(GrantOutput(group_id, user_id, False, changed))


ROUTES = [
    Route("/orgs/{org}/groups/{group}/members", add_member, methods=["POST"]),
    Route("/orgs/{org}/groups/{group}/members/{user}", remove_member, methods=["DELETE"]),
]
