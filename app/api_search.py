"""POST `.search` (RFC 7644 §3.4.3): a GET's query sent as a body, for the Users, the Groups, or both.

The body decodes into the same ListQuery as a GET's query string, and runs the same query code, so a filter,
a sort or a selection means exactly what it means in a GET.

The root `/.search` answers with the users and then the groups: the two lists are concatenated, Users first,
each in the order a GET of its own would give (`sortBy` sorts within each type), and `startIndex` and `count`
page through that concatenation; totalResults counts both. A filter or `sortBy` naming an attribute only
one type has (`userName`, `members`) applies to that type alone: the other type has nothing the filter could
match, so it contributes no resources, and is not sorted by it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.api_groups import groups_page
from app.api_users import search_parameters, user_type, users_page
from app.http import authenticate, list_response, read_json
from app.tenancy import Principal
from scim.errors import invalid_filter
from scim.filter import leaves
from scim.query import ListQuery
from scim.schema import GROUP, ResourceType

Page = Callable[[Request, Principal, ListQuery], Awaitable[tuple[int, list[dict[str, Any]]]]]


def _searching(page: Page) -> Callable[[Request], Awaitable[Response]]:
    async def search(request: Request) -> Response:
        principal = await authenticate(request)
        query = search_parameters(request, await read_json(request))
        total, resources = await page(request, principal, query)
        return list_response(total, query.start_index, resources)

    return search


def _has_attributes_of(resource_type: ResourceType, query: ListQuery) -> bool:
    """Whether every attribute the query's filter names is one of `resource_type`'s."""
    if query.filter is None:
        return True
    return all(
        resource_type.resolve(leaf.path.schema, leaf.path.name, leaf.path.sub) is not None
        for leaf in leaves(query.filter)
    )


async def search_all(request: Request) -> Response:
    principal = await authenticate(request)
    query = search_parameters(request, await read_json(request))
    # In the order the root search lists them; the Users with the organization's own extensions.
    kinds: tuple[tuple[ResourceType, Page], ...] = (
        (await user_type(request, principal), users_page),
        (GROUP, groups_page),
    )
    pages = [(kind, page) for kind, page in kinds if _has_attributes_of(kind, query)]
    if not pages:
        raise invalid_filter(
            f"The filter '{query.filter}' names an attribute that neither Users nor Groups have."
        )
    total, resources = 0, list[dict[str, Any]]()
    for kind, page in pages:
        sort_by = query.sort_by
        if sort_by is not None and kind.resolve(sort_by.schema, sort_by.name, sort_by.sub) is None:
            sort_by = None
        # Positions before this type's first resource are the earlier types' `total`.
        kind_query = msgspec.structs.replace(
            query,
            start_index=max(1, query.start_index - total),
            count=query.count - len(resources),
            sort_by=sort_by,
        )
        kind_total, kind_resources = await page(request, principal, kind_query)
        total += kind_total
        resources += kind_resources
    return list_response(total, query.start_index, resources)


ROUTES = [
    Route("/Users/.search", _searching(users_page), methods=["POST"]),
    Route("/Groups/.search", _searching(groups_page), methods=["POST"]),
    Route("/.search", search_all, methods=["POST"]),
]
