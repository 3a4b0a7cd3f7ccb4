"""Long lists in the console, a page at a time by keyset: the page's query asks for one item more than it
shows, and that one's presence is what says a next page exists. Cursors are the management API's (opaque,
tied to their listing: app/http/api/edge.py), carried in the page's links. And who did what, as lists of
changes name them for people."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
from starlette.requests import Request

from app.http.api.edge import encode_cursor, page_after
from app.services import tenancy
from eventstore.pool import Connection

PAGE_SIZE = 50
Key = TypeVar("Key", bound=msgspec.Struct)
Item = TypeVar("Item")


def cursor_of(request: Request, listing: str, key_type: type[Key]) -> Key | None:
    """Where the request's page starts: after the key its `cursor` holds; None for the first page. A cursor
    this listing did not give is answered 400 (the console's problem page)."""
    return page_after(request, listing, key_type)


def paged(
    request: Request,
    items: Sequence[Item],
    listing: str,
    key_of: Callable[[Item], msgspec.Struct],
    limit: int = PAGE_SIZE,
    path: str | None = None,
) -> tuple[list[Item], str | None]:
    """The page's items (at most `limit` of the `limit + 1` asked for) and the link to the next page (of
    `path`, by default the request's), with the request's other parameters (filters) kept; None on the last
    page."""
    shown = list(items[:limit])
    if len(items) <= limit or not shown:
        return shown, None
    following = request.url.include_query_params(cursor=encode_cursor(listing, key_of(shown[-1])))
    return shown, f"{path or following.path}?{following.query}"


_SCOPES = {"scim": "SCIM token", "admin": "admin token", "auditor": "auditor token"}


async def actor_names(connection: Connection, org_id: uuid.UUID) -> dict[str, str]:
    """The organization's tokens as the log names them ("token:<id>"), in words for people: the label its
    holder gave it, and what it is for (an actor not here is shown as recorded)."""
    return {
        f"token:{token.token_id}": f"{token.label or token.token_id} ({_SCOPES.get(token.scope, token.scope)})"
        for token in await tenancy.list_tokens(connection, org_id)
    }
