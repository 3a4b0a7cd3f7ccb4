"""The org's history, told in words, a page at a time from an opaque cursor.

Like everything the auditors read, it comes from the events themselves, never the projections.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from domain import catalog
from domain.catalog import Group, Project, Role
from domain.org_schemas import OrgSchema
from domain.users import User
from eventstore.personal_data import readable, readable_rows
from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, LogPosition, RecordedEvent
from eventstore.store import ASSIGNED_TX
from projections.audit import Snapshot

# The events that name groups: a history page replays these alone up to its cursor (a partial index,
# migration 0015, holds just them), so that each event is told with the names of its time.
CATALOG_TYPES = catalog.EVENT_TYPE_NAMES
# Spelled out rather than a parameter, so that the planner can prove the partial index applies.
_CATALOG = "type IN (" + ", ".join(f"'{name}'" for name in CATALOG_TYPES) + ")"

# Kinds of event a history can be narrowed to (the console's filter), each the event types it covers.
EVENT_KINDS: dict[str, tuple[str, ...]] = {
    "membership": (User.JoinedGroup.TOPIC, User.LeftGroup.TOPIC),
    "status": (
        User.Created.TOPIC,
        User.Provisioned.TOPIC,
        User.Deactivated.TOPIC,
        User.Reactivated.TOPIC,
        User.Deleted.TOPIC,
        User.RemovedFromOrganization.TOPIC,
        User.JoinedOrganization.TOPIC,
        User.Erased.TOPIC,
    ),
    "profile": (User.ProfileUpdated.TOPIC,),
    "catalog": CATALOG_TYPES,
    "schema": (OrgSchema.Declared.TOPIC, OrgSchema.Redeclared.TOPIC),
}
# The events of a user's stream: their subject is a user.
USER_TYPES = frozenset((*EVENT_KINDS["membership"], *EVENT_KINDS["status"], *EVENT_KINDS["profile"]))

# A user's changes of state, as a history tells them.
_STATE_CHANGES = {
    User.Deactivated.TOPIC: "deactivated",
    User.Reactivated.TOPIC: "reactivated",
    User.Deleted.TOPIC: "deleted",
}


def describe(event: RecordedEvent, snapshot: Snapshot) -> str:
    """The change an event records, in words, with names as they were when it was recorded."""
    payload = event.payload
    cause = f" (cause: {payload['cause']})" if payload.get("cause") else ""
    match event.type:
        case User.Provisioned.TOPIC:
            attributes = payload.get("attributes", {})
            return f"provisioned user '{attributes.get('userName')}', active {payload.get('active')}"
        case User.ProfileUpdated.TOPIC:
            changes = [f"{key} = {value!r}" for key, value in payload.get("changed", {}).items()]
            changes += [f"{key} removed" for key in payload.get("removed", [])]
            return "profile: " + "; ".join(changes)
        case User.Deactivated.TOPIC if payload.get("unassigned"):
            return "deactivated: 'active' was removed, and is unassigned"
        case User.Deactivated.TOPIC | User.Reactivated.TOPIC | User.Deleted.TOPIC:
            return _STATE_CHANGES[event.type]
        case User.RemovedFromOrganization.TOPIC:
            return f"removed from the organization{cause}"
        case User.JoinedOrganization.TOPIC:
            return f"joined the organization again{cause}"
        case User.Erased.TOPIC:
            return f"personal data erased (reason: {payload.get('reason')})"
        case User.JoinedGroup.TOPIC | User.LeftGroup.TOPIC:
            verb = "added to" if event.type == User.JoinedGroup.TOPIC else "removed from"
            return f"{verb} group '{snapshot.group_name(uuid.UUID(payload['group_id']))}'{cause}"
        case Project.Created.TOPIC | Role.Created.TOPIC:
            return f"{catalog.ENTITY_KIND_OF_EVENT[event.type]} '{payload['name']}' created"
        case Project.Renamed.TOPIC | Role.Renamed.TOPIC:
            return f"{catalog.ENTITY_KIND_OF_EVENT[event.type]} renamed to '{payload['name']}'"
        case Project.Archived.TOPIC | Role.Archived.TOPIC:
            return f"{catalog.ENTITY_KIND_OF_EVENT[event.type]} archived"
        case Group.Created.TOPIC:
            return f"group '{snapshot.group_name(event.stream_id)}' created"
        case Group.Linked.TOPIC:
            return f"group '{snapshot.group_name(event.stream_id)}' linked by the identity provider"
        case Group.Unlinked.TOPIC:
            return f"group '{snapshot.group_name(event.stream_id)}' unlinked{cause}"
        case OrgSchema.Declared.TOPIC | OrgSchema.Redeclared.TOPIC:
            declaration = payload.get("declaration", {})
            names = ", ".join(attribute.get("name", "?") for attribute in declaration.get("attributes", []))
            again = " again" if event.type == OrgSchema.Redeclared.TOPIC else ""
            return f"schema '{declaration.get('id')}' declared{again} (version {event.version}): {names}"
    return event.type


# The keys of a HistoryEntry's row, in order: the columns of a history's table or CSV, even an empty one.
COLUMNS = ("position", "recorded_at", "actor", "actor_label", "request_id", "type", "subject", "change")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    position: int
    recorded_at: datetime.datetime
    actor: str
    request_id: str | None
    type: str
    subject: str  # the stream the event belongs to
    change: str
    # The group the event is about (a membership's, or a group's own), for links; not part of the row.
    group: str | None = None

    def to_row(self, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """As a history lists it; `labels` names the tokens among its actors (see tenancy.actor_labels)."""
        return {
            "position": self.position,
            "recorded_at": self.recorded_at.isoformat(),
            "actor": self.actor,
            "actor_label": (labels or {}).get(self.actor),
            "request_id": self.request_id,
            "type": self.type,
            "subject": self.subject,
            "change": self.change,
        }


def _entry(event: RecordedEvent, snapshot: Snapshot) -> HistoryEntry:
    return HistoryEntry(
        event.position,
        event.recorded_at,
        event.actor,
        event.request_id,
        event.type,
        str(event.stream_id),
        describe(event, snapshot),
        event.payload.get("group_id") or (str(event.stream_id) if event.type in _GROUP_TYPES else None),
    )


_GROUP_TYPES = frozenset({Group.Created.TOPIC, Group.Linked.TOPIC, Group.Unlinked.TOPIC})


_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})")


def encode_cursor(position: LogPosition) -> str:
    """A page's `next`: opaque to clients, so that what it holds may change without breaking them."""
    return base64.urlsafe_b64encode(f"{position.tx}.{position.position}".encode()).rstrip(b"=").decode()


def decode_cursor(text: str) -> LogPosition:
    """The position a cursor from `encode_cursor` stands for. Raises ValueError for anything else."""
    try:
        decoded = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4)).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError) as error:
        raise ValueError("not a cursor") from error
    match = _CURSOR.fullmatch(decoded)
    if match is None or max(int(match[1]), int(match[2])) >= 2**63:
        raise ValueError("not a cursor")
    return LogPosition(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which events a history tells: about one user or one group, or by one actor, in a window; and, for the
    console, about any of some subjects (a project, a role and their groups), of some types."""

    user: uuid.UUID | None = None
    group: uuid.UUID | None = None
    actor: str | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    # Events of these streams, or memberships of these groups; an empty set matches nothing.
    subjects: frozenset[uuid.UUID] | None = None
    types: frozenset[str] | None = None

    def matches(self, event: RecordedEvent) -> bool:
        if self.since is not None and event.recorded_at < self.since:
            return False
        if self.user is not None and event.stream_id != self.user:
            return False
        if (
            self.group is not None
            and event.stream_id != self.group
            and event.payload.get("group_id") != str(self.group)
        ):
            return False
        if self.types is not None and event.type not in self.types:
            return False
        if self.subjects is not None and not (
            event.stream_id in self.subjects
            or any(event.payload.get("group_id") == str(subject) for subject in self.subjects)
        ):
            return False
        return self.actor is None or event.actor in (self.actor, f"token:{self.actor}")

    def sql(self, first_parameter: int) -> tuple[str, list[Any]]:
        """The same test as `matches`, in SQL, with only the conditions that apply (so that a user's history
        is found through the primary key); parameters numbered from `first_parameter`."""
        conditions, args = [], []

        def parameter(value: Any) -> str:
            args.append(value)
            return f"${first_parameter + len(args) - 1}"

        if self.since is not None:
            conditions.append(f"recorded_at >= {parameter(self.since)}")
        if self.user is not None:
            conditions.append(f"stream_id = {parameter(self.user)}")
        if self.group is not None:
            conditions.append(
                f"(stream_id = {parameter(self.group)} OR payload->>'group_id' = {parameter(str(self.group))})"
            )
        if self.actor is not None:
            conditions.append(f"actor IN ({parameter(self.actor)}, {parameter(f'token:{self.actor}')})")
        if self.types is not None:
            conditions.append(f"type = ANY({parameter(sorted(self.types))}::text[])")
        if self.subjects is not None:
            subjects = sorted(self.subjects)
            conditions.append(
                f"(stream_id = ANY({parameter(subjects)}::uuid[]) "
                f"OR payload->>'group_id' = ANY({parameter([str(subject) for subject in subjects])}::text[]))"
            )
        return " AND ".join(conditions) or "TRUE", args


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[HistoryEntry]
    next: LogPosition | None  # where the next page starts; None when this one reached the end


# Log order within one organization (migration 0015's index), and only below the snapshot's xmin: an event
# of a transaction still in flight may yet commit with a smaller `tx` than one already read, and would then
# fall behind a cursor already handed out. Everything below the xmin is settled, so paging by (tx, position)
# returns every event exactly once, as the runner reads the log (eventstore/log_reader.py).
_PAGE = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE org_id = $1 AND (org_id, tx, position) > ($1, $2::xid8, $3::bigint)
  AND tx < pg_snapshot_xmin(pg_current_snapshot())
  AND ($4::timestamptz IS NULL OR recorded_at <= $4)
  AND ({_CATALOG} OR ({{wanted}}))
ORDER BY org_id, tx, position
"""
_CATALOG_UP_TO = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE org_id = $1 AND {_CATALOG} AND (org_id, tx, position) <= ($1, $2::xid8, $3::bigint)
ORDER BY org_id, tx, position
"""


async def history_page(
    connection: Connection,
    org_id: uuid.UUID,
    prefix: str,
    wanted: HistoryFilter,
    limit: int,
    after: LogPosition | None = None,
) -> HistoryPage:
    """Up to `limit` of the org's events after `after`, in log order, told in words. Needs a transaction,
    repeatable read so that the catalog read first and the page agree."""
    snapshot = Snapshot(prefix)  # the catalog alone, which is all that names need
    start = after or LogPosition(0, 0)
    if after is not None:
        async for row in connection.cursor(_CATALOG_UP_TO, org_id, after.tx, after.position):
            snapshot.apply(RecordedEvent(*row))
    conditions, args = wanted.sql(first_parameter=5)
    entries: list[HistoryEntry] = []
    last = start
    page = connection.cursor(
        _PAGE.format(wanted=conditions),
        org_id,
        start.tx,
        start.position,
        wanted.until,
        *args,
        prefetch=min(limit + 1, 100),  # a few ms of describing between two turns of the event loop
    )
    async for event in readable_rows(connection, page, min(limit + 1, 100)):
        if event.type in CATALOG_TYPES:
            snapshot.apply(event)  # names as they stood at each event
        if not wanted.matches(event):
            continue
        if len(entries) == limit:
            return HistoryPage(entries, last)
        entries.append(_entry(event, snapshot))
        last = event.log_position
    return HistoryPage(entries, None)


async def catalog_of(connection: Connection, org_id: uuid.UUID, prefix: str) -> Snapshot:
    """Every project, role and group the organization's log has named, archived ones included, with their
    latest names: what a filter by project, role or group is resolved against. Small: the catalog alone."""
    snapshot = Snapshot(prefix)
    async for row in connection.cursor(_CATALOG_ALL, org_id):
        snapshot.apply(RecordedEvent(*row))
    return snapshot


_CATALOG_ALL = f"""
SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 AND {_CATALOG} AND {ASSIGNED_TX}
ORDER BY org_id, tx, position
"""


async def has_stream(connection: Connection, org_id: uuid.UUID, stream_id: uuid.UUID) -> bool:
    """Whether the organization's log has a stream of this id (a user deleted since still has one)."""
    found = await connection.fetchval(_HAS_STREAM, org_id, stream_id)
    return found is not None


_HAS_STREAM = "SELECT 1 FROM events WHERE org_id = $1 AND stream_id = $2 LIMIT 1"


async def history(
    connection: Connection, org_id: uuid.UUID, prefix: str, wanted: HistoryFilter, page_size: int
) -> AsyncIterator[list[HistoryEntry]]:
    """The whole history, a page at a time, each page read in a short transaction of its own: memory and the
    time a transaction stays open are a page's, whatever the size of the log."""
    after = None
    while True:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            page = await history_page(connection, org_id, prefix, wanted, page_size, after)
        yield page.entries
        if page.next is None:
            return
        after = page.next


# A user's latest events, newest first along the primary key (org_id, stream_id, version).
_STREAM_LATEST = f"""
SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 AND stream_id = $2 ORDER BY version DESC LIMIT $3
"""


async def recent(
    connection: Connection, org_id: uuid.UUID, prefix: str, stream_id: uuid.UUID, count: int
) -> list[HistoryEntry]:
    """The last `count` events of one stream (a user's), oldest first, told in words with the names of their
    time, as `history` tells them."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        latest = await readable(
            connection,
            [RecordedEvent(*row) for row in await connection.fetch(_STREAM_LATEST, org_id, stream_id, count)],
        )
        if not latest:
            return []
        latest.sort(key=lambda event: (event.tx, event.position))
        newest = latest[-1]
        catalog_events = [
            RecordedEvent(*row)
            for row in await connection.fetch(_CATALOG_UP_TO, org_id, newest.tx, newest.position)
        ]
    snapshot = Snapshot(prefix)
    entries = []
    pending = iter(catalog_events)
    upcoming = next(pending, None)
    for event in latest:
        # The catalog as it stood when this event was recorded.
        while upcoming is not None and (upcoming.tx, upcoming.position) < (event.tx, event.position):
            snapshot.apply(upcoming)
            upcoming = next(pending, None)
        entries.append(_entry(event, snapshot))
    return entries
