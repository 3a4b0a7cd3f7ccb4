"""The query parameters of a SCIM collection GET (RFC 7644 §3.4.2), parsed."""

from __future__ import annotations

import msgspec

from scim.filter_tree import AttrPath, Filter


class ListQuery(msgspec.Struct, frozen=True):
    filter: Filter | None
    start_index: int  # 1-based
    count: int
    sort_by: AttrPath | None
    descending: bool
    include: list[AttrPath] | None  # `attributes`
    exclude: list[AttrPath] | None  # `excludedAttributes`


SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


class SearchRequest(msgspec.Struct, rename="camel"):
    """The body of a POST to `.search` (RFC 7644 §3.4.3): the query parameters of a GET, as JSON members.
    `attributes` and `excludedAttributes` are lists of names; a comma-separated string is read as a GET's."""

    schemas: list[str]
    attributes: list[str] | str | None = None
    excluded_attributes: list[str] | str | None = None
    filter: str | None = None
    sort_by: str | None = None
    sort_order: str | None = None
    start_index: int | None = None
    count: int | None = None
