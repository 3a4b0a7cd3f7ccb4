"""/Users: RFC 7644 §3 as Okta and Entra drive it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http import (
    Endpoint,
    ScimResponse,
    authenticate,
    base_url,
    decode_as,
    etag,
    if_match,
    large_body,
    list_response,
    metadata,
    off_loop,
    parse_id,
    read_json,
    services_of,
)
from app.tenancy import Principal
from projections import scim_users
from projections.scim_users import UserRow
from scim.errors import invalid_value
from scim.filter import AttrPath, parse_attr_path, parse_attribute_list
from scim.filter_cost import parse_bounded_filter
from scim.patch import PatchOperation, PatchRequest, parse_operations
from scim.query import ListQuery
from scim.schema import CORE_USER, USER, ResourceType, select_attributes


async def user_type(request: Request, principal: Principal) -> ResourceType:
    """The User resource type of the principal's organization: with the extensions it declared, if any."""
    return await services_of(request).user_types.of(principal.org_id, principal.schema_version)


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


# Far beyond any real page, and within PostgreSQL's bigint for LIMIT and OFFSET.
_LARGEST_INDEX = 2**53


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as error:
        raise invalid_value(f"{name} must be an integer, not '{text}'.") from error
    return max(-_LARGEST_INDEX, min(value, _LARGEST_INDEX))


def selection(request: Request) -> tuple[list[AttrPath] | None, list[AttrPath] | None]:
    if not request.scope["query_string"]:
        return None, None  # most requests: no query string to parse
    return _selection(request.query_params)


def _selection(params: Mapping[str, str]) -> tuple[list[AttrPath] | None, list[AttrPath] | None]:
    include = parse_attribute_list(params["attributes"]) if params.get("attributes") else None
    exclude = parse_attribute_list(params["excludedAttributes"]) if params.get("excludedAttributes") else None
    return include, exclude


def list_parameters(request: Request) -> ListQuery:
    # Parsed as Starlette's query_params parses it, into a plain dict: its multidict answers a missing name by
    # raising KeyError inside `get`, and most of the names asked for here are missing from most requests.
    params = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    settings = services_of(request).settings
    sort_order = params.get("sortOrder", "ascending").lower()
    if sort_order not in ("ascending", "descending"):
        raise invalid_value(f"sortOrder must be 'ascending' or 'descending', not '{sort_order}'.")
    include, exclude = _selection(params)
    return ListQuery(
        filter=(
            parse_bounded_filter(
                params["filter"], settings.max_filter_terms, settings.max_filter_substring_terms
            )
            if params.get("filter")
            else None
        ),
        start_index=max(1, _integer(params, "startIndex", 1)),
        count=min(max(0, _integer(params, "count", settings.default_page_size)), settings.max_page_size),
        sort_by=parse_attr_path(params["sortBy"]) if params.get("sortBy") else None,
        descending=sort_order == "descending",
        include=include,
        exclude=exclude,
    )


def patch_operations(body: Any) -> list[PatchOperation]:
    patch_request: PatchRequest = decode_as(body, PatchRequest, "PatchOp request")
    return parse_operations(patch_request)


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


class UsersCollection(Endpoint):
    async def get(self, request: Request) -> Response:
        principal = await authenticate(request)
        services = services_of(request)
        listing = list_parameters(request)
        resource_type = await user_type(request, principal)
        async with services.pool.acquire() as connection:
            page = await scim_users.query(
                connection, principal.org_id, listing, services.page_ends, resource_type
            )
        base = base_url(request)
        resources = [
            select_attributes(
                resource_type, render(row, base, resource_type), listing.include, listing.exclude
            )
            for row in page.rows
        ]
        return list_response(page.total, listing.start_index, resources)

    async def post(self, request: Request) -> Response:
        principal = await authenticate(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise invalid_value("The request body must be a JSON object describing a User.")
        resource_type = await user_type(request, principal)
        attributes = await off_loop(
            request, resource_type.validate, body, services_of(request).settings.max_identifier_length
        )
        row = await services_of(request).users.provision(
            principal.org_id, attributes, metadata(request, principal)
        )
        response: Response = await off_loop(request, _resource_response, request, row, resource_type, 201)
        return response


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
        body = await read_json(request)
        if not isinstance(body, dict):
            raise invalid_value("The request body must be a JSON object describing a User.")
        resource_type = await user_type(request, principal)
        attributes = await off_loop(
            request, resource_type.validate, body, services_of(request).settings.max_identifier_length
        )
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
        resource_type = await user_type(request, principal)
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
