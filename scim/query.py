"""The query parameters of a SCIM collection GET (RFC 7644 §3.4.2), parsed."""

from __future__ import annotations

import msgspec

from scim.filter import AttrPath, Filter


class ListQuery(msgspec.Struct, frozen=True):
    filter: Filter | None
    start_index: int  # 1-based
    count: int
    sort_by: AttrPath | None
    descending: bool
    include: list[AttrPath] | None  # `attributes`
    exclude: list[AttrPath] | None  # `excludedAttributes`
