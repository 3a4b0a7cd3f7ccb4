"""One page of a projection table, filtered and sorted, with its total, in one round trip: what every SCIM
collection GET runs; and the memory of where recent pages ended, so that the next page is found by key."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, TypeAlias

from eventstore.pool import Connection
from projections.scim_sql import Parameters, QueryCompiler
from scim.query import ListQuery

PageKey: TypeAlias = tuple[Hashable, ...]


class PageEnds:
    """Where recently served pages ended, so that the page after one is found by key, not by OFFSET.

    Okta imports with startIndex=1, 101, 201... until totalResults. With OFFSET each page walks past every
    row before it, so the last pages of a large org cost hundreds of times the first. When a page in the
    stable order is asked for right where a served one ended, it starts from that row's key instead: the
    same rows when nothing changed meanwhile, and no row skipped or repeated when something did. A miss
    (another process served the page before, or the entry aged out) falls back to OFFSET, which is correct,
    only slower. Bounded; one per process, made in the lifespan.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._ends: OrderedDict[PageKey, tuple[int, uuid.UUID]] = OrderedDict()

    def start_after(self, key: PageKey) -> tuple[int, uuid.UUID] | None:
        end = self._ends.get(key)
        if end is not None:
            self._ends.move_to_end(key)
        return end

    def remember(self, key: PageKey, end: tuple[int, uuid.UUID]) -> None:
        self._ends[key] = end
        self._ends.move_to_end(key)
        if len(self._ends) > self._capacity:
            self._ends.popitem(last=False)


@dataclass(frozen=True)
class PagedQuery:
    """One page of a projection table, filtered and sorted: what every SCIM collection GET runs."""

    table: str
    fields: str
    compiler: QueryCompiler
    id_column: str  # with sort_key, the stable order under any sortBy: total, so pages never overlap or skip

    async def fetch(
        self,
        connection: Connection,
        org_id: uuid.UUID,
        listing: ListQuery,
        page_ends: PageEnds | None = None,
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """The total matching, and the page the listing asks for as tuples of `fields`, in one round trip."""
        parameters = Parameters(offset=1)
        where = f"{self.table}.org_id = $1"
        if listing.filter is not None:
            where += f" AND {self.compiler.where(listing.filter, parameters)}"
        stable_order = f"sort_key, {self.id_column}"
        order = stable_order
        if listing.sort_by is not None:
            expression, _ = self.compiler.order_by(listing.sort_by)
            order = f"{expression} {'DESC' if listing.descending else 'ASC'} NULLS LAST, {order}"
        shape = (self.table, org_id, where, *parameters.values)
        start = None
        if listing.sort_by is None and page_ends is not None and listing.start_index > 1:
            start = page_ends.start_after((*shape, listing.start_index))
        page_where, offset = where, listing.start_index - 1
        if start is not None:
            after_key, after_id = parameters.add(start[0], "bigint"), parameters.add(start[1], "uuid")
            page_where, offset = f"{where} AND ({stable_order}) > ({after_key}, {after_id})", 0
        if listing.filter is not None and self.compiler.matches_at_most_one(listing.filter):
            # Okta's commonest request, `userName eq "…"`: counting, ordering and paging in SQL would cost
            # the database more than the lookup itself.
            found = await connection.fetch(
                f"SELECT {self.fields} FROM {self.table} WHERE {where}", org_id, *parameters.values
            )
            return len(found), [tuple(row) for row in found[offset : offset + listing.count]]
        limit, skip = parameters.add(listing.count, "bigint"), parameters.add(offset, "bigint")
        # The total and the page in one round trip; the LEFT JOIN yields one row of NULLs for an empty page.
        rows = await connection.fetch(
            f"SELECT total.n, page.* FROM (SELECT count(*) AS n FROM {self.table} WHERE {where}) AS total "
            f"LEFT JOIN LATERAL (SELECT {self.fields}, {stable_order} FROM {self.table} WHERE {page_where} "
            f"ORDER BY {order} LIMIT {limit} OFFSET {skip}) AS page ON TRUE",
            org_id,
            *parameters.values,
        )
        total: int = rows[0]["n"]
        page = [row[1:-2] for row in rows if row[-1] is not None]
        if len(page) == listing.count and listing.sort_by is None and page_ends is not None:
            # Only a full page can have a next one; a lookup by userName never does.
            last = rows[-1]
            page_ends.remember((*shape, listing.start_index + len(page)), (last[-2], last[-1]))
        return total, page
