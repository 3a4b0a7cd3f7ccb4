"""Everything SCIM reads, kept inline: users, groups, memberships, the catalog and organizations' schemas; and
the access grants the host app's access check reads (projections/access_grants.py).

`ScimProjection` is the event store's inline projection (eventstore.inline_projection.InlineProjection),
registered once where the services are built: the store writes it in every transaction that appends
events, so no writer can forget it. `rebuild` recreates all of it from the log alone, through the same code.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain.org_schemas import EVENT_TYPE_NAMES as ORG_SCHEMA_EVENT_TYPES
from domain.users import MEMBERSHIP_EVENT_TYPE_NAMES, User
from eventstore.inline_projection import FollowUp
from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, RecordedEvent
from eventstore.store import ASSIGNED_TX, Transaction
from projections import access_grants, org_schemas, scim_users
from projections.scim_groups import EVENT_TYPES as GROUP_EVENT_TYPES
from projections.scim_groups import GroupProjector

GROUP_TABLES = "scim_groups, group_members, catalog_projects, catalog_roles"
_TABLES = f"scim_users, {GROUP_TABLES}, org_schemas, access_grants"


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """A fold holds a chunk of the log's rows at a time and allocates several objects per event, none of them
    garbage in a cycle: the cyclic collector walked them again and again. With it, reading the 148,000 events
    of `make bench`'s log alone took twice as long, measured. Collecting when the fold ends loses nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ScimProjection:
    def __init__(self, group_prefix: str) -> None:
        self.groups = GroupProjector(group_prefix)

    def riding(self, org_id: uuid.UUID, aggregates: Sequence[Aggregate]) -> FollowUp | None:
        """One user's change that reaches no group table (every SCIM write to a user but a membership's) is
        written by the append's own statement: one round trip, and outside an explicit transaction both commit
        together or not at all. Anything else is projected after the append (`project`)."""
        if len(aggregates) != 1 or not isinstance(user := aggregates[0], User):
            return None
        pending = user.pending_events
        if not pending:
            return None  # the request changed nothing: nothing is appended
        types = [get_topic(type(event)) for event in pending]
        if any(event_type in GROUP_EVENT_TYPES for event_type in types):
            return None
        return scim_users.follow_up(user, org_id, pending[0].originator_version, types)

    async def project(
        self, connection: Connection, recorded: Sequence[RecordedEvent], aggregates: Mapping[uuid.UUID, Any]
    ) -> None:
        """Project `recorded`, just appended; `aggregates` holds the aggregates saved, by id. A user's row is
        rendered from the User aggregate: one appended without it (raw events) is loaded, in this transaction."""
        by_stream: dict[uuid.UUID, list[RecordedEvent]] = {}
        for event in recorded:
            by_stream.setdefault(event.stream_id, []).append(event)
        users = await _users_of(connection, by_stream, aggregates)
        changed = [
            (users[stream_id], events) for stream_id, events in by_stream.items() if stream_id in users
        ]
        if changed:
            await scim_users.write(connection, changed)
        # The grants of the membership changes ride in the statement that writes the memberships.
        grants = (
            access_grants.fold(recorded)
            if any(event.type in MEMBERSHIP_EVENT_TYPE_NAMES for event in recorded)
            else None
        )
        riding = access_grants.riding(grants) if grants is not None else None
        await self.groups.apply(connection, recorded, riding)
        if grants is not None and riding is None:
            await access_grants.write(connection, grants)
        for events in by_stream.values():
            if events[-1].type in ORG_SCHEMA_EVENT_TYPES:
                await org_schemas.write(connection, events[-1])  # the row is the stream's latest declaration

    async def rebuild(self, connection: Connection, reader: Connection) -> int:
        """Replace every SCIM row with rows derived from the log alone; returns the events replayed.

        Writers update these tables in the transaction that appends their events, so the exclusive locks
        make them wait, and they then apply their change on top of the rebuilt rows. Readers of users wait
        too (see `scim_users.rebuild_rows`): about a second per 30,000 events. It opens its own transaction
        and then vacuums, so `connection` must not be inside one. `reader`, a second connection, reads the
        log meanwhile (see `scim_users.rebuild_rows`).
        """
        with without_cyclic_gc():
            replayed = await self._rebuild(connection, reader)
        # Rows copied in bulk are not yet marked visible to all, so counting an org's users (every page of a
        # listing does) read every row of the table rather than the index: 23 ms instead of 5 for 100,000
        # users. VACUUM marks them, and ANALYZE gives the planner the new tables' statistics.
        await connection.execute(f"VACUUM (ANALYZE) {_TABLES}")
        return replayed

    async def rebuild_groups_of(self, connection: Connection, org_id: uuid.UUID) -> None:
        """Replace one organization's groups, memberships and catalog with rows derived from its events alone.

        The caller holds GROUP_TABLES in EXCLUSIVE mode in its transaction, as `rebuild` does, so that no
        writer changes them between the read of the log and the last row written.
        """
        rows = await connection.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 AND type = ANY($2::text[]) AND {ASSIGNED_TX} "
            "ORDER BY tx, position",
            org_id,
            sorted(GROUP_EVENT_TYPES),
        )
        await self.groups.rebuild_org(connection, org_id, [RecordedEvent(*row) for row in rows])

    async def _rebuild(self, connection: Connection, reader: Connection) -> int:
        async with connection.transaction():
            await connection.execute(f"LOCK TABLE {_TABLES} IN EXCLUSIVE MODE")
            replayed = await scim_users.rebuild_rows(connection, reader)
            rows = await connection.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE type = ANY($1::text[]) AND {ASSIGNED_TX} "
                "ORDER BY tx, position",
                sorted(GROUP_EVENT_TYPES),
            )
            group_events = [RecordedEvent(*row) for row in rows]
            await self.groups.rebuild(connection, group_events)
            await access_grants.rebuild(connection, group_events)
            await org_schemas.rebuild_rows(connection)
            return replayed + sum(1 for row in rows if row["type"] not in scim_users.USER_EVENT_TYPES)


async def _users_of(
    connection: Connection,
    by_stream: Mapping[uuid.UUID, Sequence[RecordedEvent]],
    aggregates: Mapping[uuid.UUID, Any],
) -> dict[uuid.UUID, User]:
    """The User aggregates of the user streams among `by_stream`: those saved, and the others loaded."""
    users = {stream_id: user for stream_id, user in aggregates.items() if isinstance(user, User)}
    unsaved: dict[uuid.UUID, list[uuid.UUID]] = {}
    for stream_id, events in by_stream.items():
        if stream_id not in users and events[0].type in scim_users.USER_EVENT_TYPES:
            unsaved.setdefault(events[0].org_id, []).append(stream_id)
    for org_id, stream_ids in unsaved.items():
        loaded = await Transaction(connection).load(org_id, stream_ids)
        users.update((stream_id, user) for stream_id, user in loaded.items() if isinstance(user, User))
    return users
