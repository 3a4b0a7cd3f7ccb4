"""`as-of`: users, groups and memberships as they stood at an instant, replayed through the domain one stream
at a time, in memory that grows with the organization's users, not with its log.

Each aggregate's state depends on its own events alone, so the log is read in stream order (the primary key's)
rather than in log order: one user is replayed at a time and kept only as the few fields the report shows,
its attributes already encoded. The catalog (projects, roles, groups) is small and kept whole, since group
names are read from it. The log is read in batches of short statements, each bounded by the same settled
point (below the first statement's snapshot xmin), so that no transaction stays open for the whole replay and
the loop yields between batches.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from domain.catalog import Group, Project, Role
from domain.users import User
from eventstore.personal_data import readable
from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, LogPosition, RecordedEvent
from projections.audit import Snapshot
from scim.folding import fold

# Events read by one statement, and replayed between two turns of the event loop (a few milliseconds).
REPLAY_BATCH = 2000
REPLAY_SLICE = 250

_BATCH = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE org_id = $1 AND (org_id, stream_id, version) > ($1, $2::uuid, $3::integer)
  AND recorded_at <= $4 AND tx < $5::xid8
ORDER BY org_id, stream_id, version
LIMIT $6
"""
_SETTLED = "SELECT pg_snapshot_xmin(pg_current_snapshot())"
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class UserState:
    """What the report shows of a user at the instant."""

    order: tuple[str, int, int]  # userName ignoring case, then where the user entered the log
    id: str
    user_name: str
    active: bool
    member: bool
    groups: tuple[str, ...]
    attributes: msgspec.Raw


@dataclass
class StateAt:
    """The state at an instant, ready to be written out a row at a time (see `rows_of_report`)."""

    catalog: Snapshot
    users: list[UserState] = field(default_factory=list)
    group_order: dict[uuid.UUID, LogPosition] = field(default_factory=dict)
    # Filled as users are replayed, in stream order, which is the order of their ids: already sorted.
    members: dict[str, list[UserState]] = field(default_factory=dict)

    def user_rows(self, users: list[UserState] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of `users` (some of `self.users`), or of every user."""
        for user in self.users if users is None else users:
            yield {
                "id": user.id,
                "userName": user.user_name,
                "active": user.active,
                "member": user.member,
                "groups": sorted(self.catalog.group_name(uuid.UUID(group)) for group in user.groups),
                "attributes": user.attributes,
            }

    def _live_groups(self) -> list[tuple[str, str]]:
        """(id, displayName) of each live group, by name."""
        named = [
            (self.catalog.group_name(group_id), self.group_order[group_id], str(group_id))
            for group_id in self.catalog.groups
            if self.catalog.live_group(group_id)
        ]
        return [(group_id, name) for name, _, group_id in sorted(named)]

    def group_rows(self) -> Iterator[dict[str, Any]]:
        for group_id, name in self._live_groups():
            yield {
                "id": group_id,
                "displayName": name,
                "linked": self.catalog.groups[uuid.UUID(group_id)].linked,
                "members": [user.id for user in self.members.get(group_id, [])],
            }

    def membership_rows(self) -> Iterator[dict[str, Any]]:
        for group_id, name in self._live_groups():
            for user in self.members.get(group_id, []):
                yield {"user": user.id, "userName": user.user_name, "group": group_id, "displayName": name}


class _Replay:
    def __init__(self, state: StateAt) -> None:
        self.state = state
        self.stream: uuid.UUID | None = None
        self.aggregate: Any = None
        self.entered = LogPosition(0, 0)

    def apply(self, recorded: RecordedEvent) -> None:
        if recorded.stream_id != self.stream:
            self.finish()
            self.stream, self.aggregate, self.entered = recorded.stream_id, None, recorded.log_position
        event = recorded.to_domain_event()
        if self.aggregate is None:
            self.aggregate = event.mutate(None)
        else:
            event.mutate(self.aggregate)

    def finish(self) -> None:
        """File the stream just replayed: a user as the fields it reports, the catalog as aggregates."""
        aggregate, catalog, stream = self.aggregate, self.state.catalog, self.stream
        if stream is None:
            return
        if isinstance(aggregate, User) and not aggregate.deleted:
            user = UserState(
                (fold(aggregate.user_name), self.entered.tx, self.entered.position),
                str(aggregate.id),
                aggregate.user_name,
                aggregate.active,
                aggregate.member,
                tuple(aggregate.groups),
                msgspec.Raw(_encoder.encode(aggregate.attributes)),
            )
            self.state.users.append(user)
            for group in user.groups:
                self.state.members.setdefault(group, []).append(user)
        elif isinstance(aggregate, Project):
            catalog.projects[stream] = aggregate
        elif isinstance(aggregate, Role):
            catalog.roles[stream] = aggregate
        elif isinstance(aggregate, Group):
            catalog.groups[stream] = aggregate
            self.state.group_order[stream] = self.entered
        self.stream, self.aggregate = None, None


async def state_at(
    database: asyncpg.Pool[asyncpg.Record] | Connection,
    org_id: uuid.UUID,
    at: datetime.datetime,
    prefix: str,
    batch: int = REPLAY_BATCH,
) -> StateAt:
    """The org's state at `at`. `database` is a pool (each batch borrows a connection for one statement) or a
    connection outside any transaction."""
    settled = await database.fetchval(_SETTLED)
    state = StateAt(Snapshot(prefix))
    replay = _Replay(state)
    rows = await database.fetch(_BATCH, org_id, uuid.UUID(int=0), 0, at, settled, batch)
    while rows:
        # The next batch is read while this one is replayed: the database's time overlaps ours.
        following = (
            asyncio.ensure_future(
                database.fetch(_BATCH, org_id, rows[-1]["stream_id"], rows[-1]["version"], at, settled, batch)
            )
            if len(rows) == batch
            else None
        )
        try:
            for start in range(0, len(rows), REPLAY_SLICE):
                await asyncio.sleep(0)  # the next read is sent, and other requests are served, meanwhile
                for event in await readable(
                    database, [RecordedEvent(*row) for row in rows[start : start + REPLAY_SLICE]]
                ):
                    replay.apply(event)
        except BaseException:
            if following is not None:
                following.cancel()
            raise
        rows = await following if following is not None else []
    replay.finish()
    state.users.sort(key=lambda user: user.order)
    return state
