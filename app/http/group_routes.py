"""/Groups: the app's Project × Role groups, as Okta's Push Groups drives them.

Groups are never created or renamed through SCIM: they exist for every live Project × Role pair of the
org. Okta links one of its groups to one of them by exact displayName, then pushes membership. DELETE
unlinks: the memberships go, the group stays, ready to be linked again.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.auth import authenticate, metadata
from app.http.endpoint import Endpoint, services_of
from app.http.reading import (
    etag,
    if_match,
    list_parameters,
    off_loop,
    parse_id,
    patch_operations,
    read_json,
    selection,
)
from app.http.responses import ScimResponse, base_url, list_response
from app.services.tenancy import Principal
from projections import scim_groups
from projections.scim_groups import GroupRow, Member
from scim.core_schemas import CORE_GROUP, GROUP
from scim.errors import ScimError, invalid_value
from scim.filter_tree import AttrPath
from scim.group_patch import GroupChange, plan_patch, plan_put
from scim.query import ListQuery
from scim.selection import select_attributes

CREATE_REFUSED = (
    "Groups cannot be created through SCIM: projects and roles are created in the app, which creates the "
    "group of every Project × Role pair. In Okta, use Push Groups → Link Group to link your Okta group to "
    "the existing group with the matching name."
)


def render(row: GroupRow, members: list[Member] | None, base: str) -> dict[str, Any]:
    group_id = str(row.group_id)
    document: dict[str, Any] = {"schemas": [CORE_GROUP], "id": group_id, "displayName": row.display_name}
    if members:
        document["members"] = [
            {
                "value": str(member.user_id),
                "display": member.display,
                "$ref": f"{base}/Users/{member.user_id}",
                "type": "User",
            }
            for member in members
        ]
    document["meta"] = {
        "resourceType": "Group",
        "created": row.created.isoformat(),
        "lastModified": row.last_modified.isoformat(),
        "location": f"{base}/Groups/{group_id}",
        "version": etag(row.version),
    }
    return document


def _wants_members(include: list[AttrPath] | None, exclude: list[AttrPath] | None) -> bool:
    """Whether the response shows members; when it does not, they are not even read (Okta's import sends
    excludedAttributes=members, and a group may have thousands)."""

    def names_members(paths: list[AttrPath]) -> bool:
        return any(path.name.lower() == "members" for path in paths)

    if include:
        return names_members(include)
    return not (exclude and names_members(exclude))


def _plan_patch(body: Any) -> GroupChange:
    return plan_patch(patch_operations(body))


async def groups_page(
    request: Request, principal: Principal, query: ListQuery
) -> tuple[int, list[dict[str, Any]]]:
    """The groups matching `query` in total, and the page it asks for, rendered: a GET's and a search's."""
    org_id = principal.org_id
    services = services_of(request)
    async with services.pool.acquire() as connection:
        page = await scim_groups.query(connection, org_id, query, services.page_ends)
        members: dict[Any, list[Member]] = {}
        if page.rows and _wants_members(query.include, query.exclude):
            members = await scim_groups.members_of(connection, org_id, [row.group_id for row in page.rows])
    base = base_url(request)
    resources = [
        select_attributes(GROUP, render(row, members.get(row.group_id), base), query.include, query.exclude)
        for row in page.rows
    ]
    return page.total, resources


class GroupsCollection(Endpoint):
    async def get(self, request: Request) -> Response:
        principal = await authenticate(request)
        query = list_parameters(request)
        total, resources = await groups_page(request, principal, query)
        return list_response(total, query.start_index, resources)

    async def post(self, request: Request) -> Response:
        await authenticate(request)
        raise ScimError(403, CREATE_REFUSED)


class GroupResource(Endpoint):
    async def get(self, request: Request) -> Response:
        principal = await authenticate(request)
        services = services_of(request)
        group_id = parse_id(request.path_params["id"])
        async with services.pool.acquire() as connection:
            row = await scim_groups.get(connection, principal.org_id, group_id)
            if row is None:
                raise await services.groups.missing(connection, principal.org_id, group_id)
        if request.headers.get("if-none-match") == etag(row.version):
            return Response(status_code=304, headers={"ETag": etag(row.version)})
        return await self._respond(request, row, principal.org_id)

    async def put(self, request: Request) -> Response:
        principal = await authenticate(request)
        group_id = parse_id(request.path_params["id"])
        body = await read_json(request)
        if not isinstance(body, dict):
            raise invalid_value("The request body must be a JSON object describing a Group.")
        change = await off_loop(request, plan_put, body)
        row = await services_of(request).groups.change(
            principal.org_id, group_id, change, metadata(request, principal), if_match(request)
        )
        return await self._respond(request, row, principal.org_id)

    async def patch(self, request: Request) -> Response:
        principal = await authenticate(request)
        group_id = parse_id(request.path_params["id"])
        change = await off_loop(request, _plan_patch, await read_json(request))
        row = await services_of(request).groups.change(
            principal.org_id, group_id, change, metadata(request, principal), if_match(request)
        )
        if "attributes" in request.query_params or "excludedAttributes" in request.query_params:
            return await self._respond(request, row, principal.org_id)
        # RFC 7644 §3.5.2 allows 204; answering with the whole member list would make every change O(members).
        return Response(status_code=204, headers={"ETag": etag(row.version)})

    async def delete(self, request: Request) -> Response:
        principal = await authenticate(request)
        group_id = parse_id(request.path_params["id"])
        await services_of(request).groups.unlink(
            principal.org_id, group_id, metadata(request, principal), if_match(request)
        )
        return Response(status_code=204)

    @staticmethod
    async def _respond(request: Request, row: GroupRow, org_id: uuid.UUID) -> Response:
        include, exclude = selection(request)
        members = None
        if _wants_members(include, exclude):
            async with services_of(request).pool.acquire() as connection:
                members = (await scim_groups.members_of(connection, org_id, [row.group_id]))[row.group_id]
        document = select_attributes(GROUP, render(row, members, base_url(request)), include, exclude)
        return ScimResponse(document, headers={"ETag": etag(row.version)})


ROUTES = [
    Route("/Groups", GroupsCollection),
    Route("/Groups/{id}", GroupResource),
]
