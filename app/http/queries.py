"""What a listing asks for, whichever resource it lists: a GET's query string or a `.search` body (RFC 7644
§3.4.2, §3.4.3), parsed and bounded the same way into one ListQuery; and the attribute selection of any
response (`attributes`, `excludedAttributes`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from app.http.bodies import decode_as
from app.http.endpoint import services_of
from app.infrastructure.settings import Settings
from scim.errors import invalid_syntax, invalid_value
from scim.filter import parse_attr_path, parse_attribute_list
from scim.filter_cost import parse_bounded_filter
from scim.filter_tree import AttrPath
from scim.query import SEARCH_REQUEST, ListQuery, SearchRequest

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
