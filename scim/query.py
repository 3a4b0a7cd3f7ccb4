"""The query parameters of a SCIM collection GET (RFC 7644 §3.4.2), parsed."""

from __future__ import annotations

from dataclasses import dataclass

from scim.filter import AttrPath, Filter


@dataclass(frozen=True, slots=True)
class ListQuery:
    filter: Filter | None
    start_index: int  # 1-based
    count: int
    sort_by: AttrPath | None
    descending: bool
    include: list[AttrPath] | None  # `attributes`
    exclude: list[AttrPath] | None  # `excludedAttributes`
