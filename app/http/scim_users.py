"""/Users: RFC 7644 §3 as Okta and Entra drive it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.auth import authenticate, metadata
from app.http.bodies import decode_as, etag, if_match, large_body, off_loop, parse_id, read_json
from app.http.endpoint import Endpoint, services_of
from app.http.responses import ScimResponse, base_url, list_response
from app.infrastructure.settings import Settings
from app.services.tenancy import Principal
from projections import scim_users
from projections.scim_users import UserRow
from scim.errors import invalid_syntax, invalid_value
from scim.filter import AttrPath, parse_attr_path, parse_attribute_list
from scim.filter_cost import parse_bounded_filter
from scim.patch import PatchOperation, PatchRequest, parse_operations
from scim.query import SEARCH_REQUEST, ListQuery, SearchRequest
from scim.schema import CORE_USER, USER, ResourceType, select_attributes


async def user_type(
    request: Request, principal: Principal, named: Iterable[tuple[str, Any]] = ()
) -> ResourceType:
    """The User resource type of the principal's organization: with the extensions it declared, if any.

    The type follows the schema version cached with the token. When `named` (a body's attributes, a PATCH's
    paths and pathless keys, with their values) holds a URN, or an attribute under one, that this type does
    not know, the organization may have declared it since: the current type is read, lest values sent just
    after `schema extend` be dropped, or a PUT served with an older type record them as removed."""
    user_types = services_of(request).user_types
    resource_type = await user_types.of(principal.org_id, principal.schema_version)
    if any(not _knows(resource_type, name, value) for name, value in named):
        return await user_types.current(principal.org_id)
    return resource_type


def _knows(resource_type: ResourceType, name: str, value: Any) -> bool:
    """Whether `resource_type` has the schema a URN-qualified `name` names, and each attribute `value` holds
    under it; a name without a URN is the core schema's, which never changes."""
    if name[:4].lower() != "urn:":
        return True
    extension = resource_type.extension(name)
    if extension is not None:
        return not isinstance(value, dict) or all(extension.attribute(key) is not None for key in value)
    # `urn:…:User:attribute` (or `.sub`), as a PATCH path or a pathless key names one attribute.
    schema, _, attribute = name.rpartition(":")
    return resource_type.resolve(schema, attribute.partition(".")[0].partition("[")[0]) is not None


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


# Far beyond any real page, and within PostgreSQL's bigint for LIMIT and OFFSET.
_LARGEST_INDEX = 2**53


def _integer(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError as error:
        raise invalid_value(f"{name} must be an integer, not '{text}'.") from error


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
    include, exclude = _selection(params)
    return listing(
        services_of(request).settings,
        filter_text=params.get("filter"),
        start_index=_integer(params, "startIndex"),
        count=_integer(params, "count"),
        sort_by=params.get("sortBy"),
        sort_order=params.get("sortOrder"),
        include=include,
        exclude=exclude,
    )


def search_parameters(request: Request, body: Any) -> ListQuery:
    """A `.search` body (RFC 7644 §3.4.3) as the same ListQuery a GET's query string makes."""
    search: SearchRequest = decode_as(body, SearchRequest, "SearchRequest")
    if SEARCH_REQUEST not in search.schemas:
        raise invalid_syntax(f'A search\'s body must have "schemas": ["{SEARCH_REQUEST}"].')
    return listing(
        services_of(request).settings,
        filter_text=search.filter,
        start_index=search.start_index,
        count=search.count,
        sort_by=search.sort_by,
        sort_order=search.sort_order,
        include=_attribute_names(search.attributes),
        exclude=_attribute_names(search.excluded_attributes),
    )


def _attribute_names(names: list[str] | str | None) -> list[AttrPath] | None:
    if not names:
        return None
    return parse_attribute_list(names if isinstance(names, str) else ",".join(names))


def listing(
    settings: Settings,
    *,
    filter_text: str | None,
    start_index: int | None,
    count: int | None,
    sort_by: str | None,
    sort_order: str | None,
    include: list[AttrPath] | None,
    exclude: list[AttrPath] | None,
) -> ListQuery:
    """What a GET's query string or a `.search` body asks for, parsed and bounded the same way."""
    order = (sort_order or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise invalid_value(f"sortOrder must be 'ascending' or 'descending', not '{sort_order}'.")
    return ListQuery(
        filter=(
            parse_bounded_filter(filter_text, settings.max_filter_terms, settings.max_filter_substring_terms)
            if filter_text
            else None
        ),
        start_index=max(1, _bounded(start_index, 1)),
        count=min(max(0, _bounded(count, settings.default_page_size)), settings.max_page_size),
        sort_by=parse_attr_path(sort_by) if sort_by else None,
        descending=order == "descending",
        include=include,
        exclude=exclude,
    )


def _bounded(value: int | None, default: int) -> int:
    if value is None:
        return default
    return max(-_LARGEST_INDEX, min(value, _LARGEST_INDEX))


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
        body = await read_json(request)
        if not isinstance(body, dict):
            raise invalid_value("The request body must be a JSON object describing a User.")
        resource_type = await user_type(request, principal, body.items())
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
        resource_type = await user_type(request, principal, body.items())
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
