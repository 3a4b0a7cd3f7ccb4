"""POST `.search` (RFC 7644 §3.4.3): a GET's query sent as a body, for the Users, the Groups, or both.

The body decodes into the same ListQuery as a GET's query string, and runs the same query code, so a filter,
a sort or a selection means exactly what it means in a GET.

The root `/.search` answers with the users and then the groups: the two lists are concatenated, Users first,
each in the order a GET of its own would give (`sortBy` sorts within each type), and `startIndex` and `count`
page through that concatenation; totalResults counts both. A filter may name attributes of both types
(`userName pr or members pr`): for each type, a comparison on an attribute it lacks is decided as on an
unassigned attribute (`scim.filter_tree.restrict`), so `userName pr` lists no group and `not (userName pr)` every
group. `sortBy` sorts the types that have the attribute. An attribute neither type has is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.auth import authenticate, user_type
from app.http.group_routes import groups_page
from app.http.reading import read_json, search_parameters
from app.http.responses import list_response
from app.http.user_routes import users_page
from app.services.tenancy import Principal
from scim.core_schemas import GROUP
from scim.errors import invalid_filter, invalid_value
from scim.filter_tree import AttrPath, leaves, restrict
from scim.query import ListQuery
from scim.resource_type import ResourceType

Page = Callable[[Request, Principal, ListQuery], Awaitable[tuple[int, list[dict[str, Any]]]]]


def _searching(page: Page) -> Callable[[Request], Awaitable[Response]]:
    async def search(request: Request) -> Response:
        principal = await authenticate(request)
        query = search_parameters(request, await read_json(request))
        total, resources = await page(request, principal, query)
        return list_response(total, query.start_index, resources)

    return search


def _attributes_of(resource_type: ResourceType) -> Callable[[AttrPath], bool]:
    def has(path: AttrPath) -> bool:
        return resource_type.resolve(path.schema, path.name, path.sub) is not None

    return has


async def search_all(request: Request) -> Response:
    principal = await authenticate(request)
    query = search_parameters(request, await read_json(request))
    # In the order the root search lists them; the Users with the organization's own extensions.
    sources: tuple[tuple[Callable[[AttrPath], bool], Page], ...] = (
        (_attributes_of(await user_type(request, principal)), users_page),
        (_attributes_of(GROUP), groups_page),
    )
    known = [has for has, _ in sources]
    if query.filter is not None:
        for leaf in leaves(query.filter):
            if not any(has(leaf.path) for has in known):
                raise invalid_filter(f"'{leaf.path}' is an attribute of neither Users nor Groups.")
    if query.sort_by is not None and not any(has(query.sort_by) for has in known):
        raise invalid_value(f"sortBy '{query.sort_by}' is an attribute of neither Users nor Groups.")
    total, resources = 0, list[dict[str, Any]]()
    for has, page in sources:
        # A filter may name attributes of both types (`userName pr or members pr`): for each type, a comparison
        # on an attribute it lacks is decided as on an unassigned one.
        restricted = restrict(query.filter, has) if query.filter is not None else True
        if restricted is False:
            continue
        sort_by = query.sort_by if query.sort_by is not None and has(query.sort_by) else None
        # Positions before this type's first resource are the earlier types' `total`.
        kind_query = msgspec.structs.replace(
            query,
            filter=None if restricted is True else restricted,
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
