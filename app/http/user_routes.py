"""/Users: RFC 7644 §3 as Okta and Entra drive it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.auth import authenticate, metadata, user_type
from app.http.endpoint import Endpoint, services_of
from app.http.reading import (
    etag,
    if_match,
    large_body,
    list_parameters,
    off_loop,
    parse_id,
    patch_operations,
    read_json,
    selection,
)
from app.http.responses import ScimResponse, base_url, list_response
from app.services.tenancy import Principal
from projections import scim_users
from projections.scim_users import UserRow
from scim.core_schemas import CORE_USER, USER
from scim.errors import invalid_value
from scim.patch_request import PatchOperation
from scim.query import ListQuery
from scim.resource_type import ResourceType
from scim.selection import select_attributes


def _patch_names(operations: list[PatchOperation]) -> Iterator[tuple[str, Any]]:
    """The attributes a PATCH names, with their values: each path, and each key of a pathless value."""
    for operation in operations:
        if operation.path is not None:
            yield str(operation.path.attribute), operation.value
        elif isinstance(operation.value, dict):
            yield from operation.value.items()


def render(row: UserRow, base: str, resource_type: ResourceType = USER) -> dict[str, Any]:
    resource = resource_type.in_schema_order(row.resource)
    schemas = [CORE_USER, *(urn for urn in resource_type.schema_ids[1:] if urn in resource)]
    user_id = str(row.user_id)
    return {
        "schemas": schemas,
        "id": user_id,
        **resource,
        **(
            {
                "groups": [
                    {
                        "value": str(group["value"]),
                        "display": group["display"],
                        "$ref": f"{base}/Groups/{group['value']}",
                        "type": "direct",
                    }
                    for group in row.groups
                ]
            }
            if row.groups
            else {}
        ),
        "meta": {
            "resourceType": "User",
            "created": row.created.isoformat(),
            "lastModified": row.last_modified.isoformat(),
            "location": f"{base}/Users/{user_id}",
            "version": etag(row.version),
        },
    }


def _resource_response(
    request: Request, row: UserRow, resource_type: ResourceType, status: int = 200
) -> Response:
    include, exclude = selection(request)
    document = select_attributes(
        resource_type, render(row, base_url(request), resource_type), include, exclude
    )
    headers = {"ETag": etag(row.version)}
    if status == 201:
        headers["Location"] = (
            document["meta"]["location"]
            if "meta" in document
            else (f"{base_url(request)}/Users/{row.user_id}")
        )
    return ScimResponse(document, status_code=status, headers=headers)


async def users_page(
    request: Request, principal: Principal, query: ListQuery
) -> tuple[int, list[dict[str, Any]]]:
    """The users matching `query` in total, and the page it asks for, rendered: a GET's and a search's.
    Filters, sorting and selection read the principal's organization's User type, its extensions included."""
    services = services_of(request)
    resource_type = await user_type(request, principal)
    async with services.pool.acquire() as connection:
        page = await scim_users.query(connection, principal.org_id, query, services.page_ends, resource_type)
    base = base_url(request)
    resources = [
        select_attributes(resource_type, render(row, base, resource_type), query.include, query.exclude)
        for row in page.rows
    ]
    return page.total, resources


class UsersCollection(Endpoint):
    async def get(self, request: Request) -> Response:
        principal = await authenticate(request)
        query = list_parameters(request)
        total, resources = await users_page(request, principal, query)
        return list_response(total, query.start_index, resources)

    async def post(self, request: Request) -> Response:
        principal = await authenticate(request)
        resource_type, attributes = await _validated_user(request, principal)
        row = await services_of(request).users.provision(
            principal.org_id, attributes, metadata(request, principal)
        )
        response: Response = await off_loop(request, _resource_response, request, row, resource_type, 201)
        return response


async def _validated_user(request: Request, principal: Principal) -> tuple[ResourceType, dict[str, Any]]:
    """A POST's or PUT's body as the organization's User type validates it, and that type."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_value("The request body must be a JSON object describing a User.")
    resource_type = await user_type(request, principal, body.items())
    attributes: dict[str, Any] = await off_loop(
        request, resource_type.validate, body, services_of(request).settings.max_identifier_length
    )
    return resource_type, attributes


class UserResource(Endpoint):
    async def get(self, request: Request) -> Response:
        principal = await authenticate(request)
        services = services_of(request)
        user_id = parse_id(request.path_params["id"])
        async with services.pool.acquire() as connection:
            row = await services.users.get(connection, principal.org_id, user_id)
        if request.headers.get("if-none-match") == etag(row.version):
            return Response(status_code=304, headers={"ETag": etag(row.version)})
        return _resource_response(request, row, await user_type(request, principal))

    async def put(self, request: Request) -> Response:
        principal = await authenticate(request)
        user_id = parse_id(request.path_params["id"])
        resource_type, attributes = await _validated_user(request, principal)
        row = await services_of(request).users.replace(
            principal.org_id,
            user_id,
            attributes,
            metadata(request, principal),
            if_match(request),
            off_loop=large_body(request),
        )
        response: Response = await off_loop(request, _resource_response, request, row, resource_type)
        return response

    async def patch(self, request: Request) -> Response:
        principal = await authenticate(request)
        user_id = parse_id(request.path_params["id"])
        operations = await off_loop(request, patch_operations, await read_json(request))
        resource_type = await user_type(request, principal, _patch_names(operations))
        row = await services_of(request).users.patch(
            principal.org_id,
            user_id,
            operations,
            metadata(request, principal),
            if_match(request),
            off_loop=large_body(request),
            resource_type=resource_type,
        )
        response: Response = await off_loop(request, _resource_response, request, row, resource_type)
        return response

    async def delete(self, request: Request) -> Response:
        principal = await authenticate(request)
        user_id = parse_id(request.path_params["id"])
        await services_of(request).users.delete(
            principal.org_id, user_id, metadata(request, principal), if_match(request)
        )
        return Response(status_code=204)


ROUTES = [
    Route("/Users", UsersCollection),
    Route("/Users/{id}", UserResource),
]
