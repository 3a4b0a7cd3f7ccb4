"""What auditors ask of the log: the state at an instant, and who held which access when (its history is in
`audit_history`, the streamed state at an instant in `audit_state`).

Everything here reads the events themselves, never the projections: an answer is as good as the log,
which `audit verify` proves intact. Times are the events' `recorded_at`, when the database recorded them.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.catalog import Group, Project, Role
from domain.users import MEMBERSHIP_EVENT_TYPE_NAMES, User
from eventstore.personal_data import readable_rows
from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, RecordedEvent
from eventstore.store import ASSIGNED_TX
from scim.folding import fold


def window_error(
    start: datetime.datetime | None, end: datetime.datetime | None, first: str, second: str
) -> str | None:
    """Why a window that ends before it starts is refused, naming its bounds as the caller gave them (the
    CLI's `--from`, the API's `from`); None for a window in order or open at either end."""
    if start is None or end is None or start <= end:
        return None
    return (
        f"{first} ({start.isoformat()}) is after {second} ({end.isoformat()}): the window is reversed. "
        f"Give the earlier time as {first}."
    )


async def org_events(
    connection: Connection,
    org_id: uuid.UUID,
    until: datetime.datetime | None = None,
    since: datetime.datetime | None = None,
) -> AsyncIterator[RecordedEvent]:
    """An organization's events in log order, optionally within [since, until]. Needs a transaction."""
    cursor = connection.cursor(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 AND {ASSIGNED_TX} "
        "AND ($2::timestamptz IS NULL OR recorded_at <= $2) AND ($3::timestamptz IS NULL OR recorded_at >= $3) "
        "ORDER BY tx, position",
        org_id,
        until,
        since,
        prefetch=5000,
    )
    async for event in readable_rows(connection, cursor, 5000):
        yield event


@dataclass
class Snapshot:
    """Users, projects, roles and groups as the log had them at an instant, replayed through the domain."""

    prefix: str
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    projects: dict[uuid.UUID, Project] = field(default_factory=dict)
    roles: dict[uuid.UUID, Role] = field(default_factory=dict)
    groups: dict[uuid.UUID, Group] = field(default_factory=dict)

    def apply(self, recorded: RecordedEvent) -> None:
        event = recorded.to_domain_event()
        for collection in (self.users, self.projects, self.roles, self.groups):
            existing = collection.get(recorded.stream_id)
            if existing is not None:
                event.mutate(existing)
                return
        created = event.mutate(None)
        if isinstance(created, User):
            self.users[recorded.stream_id] = created
        elif isinstance(created, Project):
            self.projects[recorded.stream_id] = created
        elif isinstance(created, Role):
            self.roles[recorded.stream_id] = created
        elif isinstance(created, Group):
            self.groups[recorded.stream_id] = created

    def group_name(self, group_id: uuid.UUID) -> str:
        group = self.groups.get(group_id)
        if group is None:
            return str(group_id)
        project, role = (
            self.projects.get(uuid.UUID(group.project_id)),
            self.roles.get(uuid.UUID(group.role_id)),
        )
        if project is None or role is None:
            return str(group_id)
        return f"{self.prefix}-{project.name}-{role.name}"

    def live_group(self, group_id: uuid.UUID) -> bool:
        group = self.groups.get(group_id)
        if group is None:
            return False
        project, role = (
            self.projects.get(uuid.UUID(group.project_id)),
            self.roles.get(uuid.UUID(group.role_id)),
        )
        return project is not None and role is not None and not project.archived and not role.archived

    def to_report(self) -> dict[str, Any]:
        users = [
            {
                "id": str(user.id),
                "userName": user.user_name,
                "active": user.active,
                "member": user.member,
                "groups": sorted(self.group_name(uuid.UUID(group)) for group in user.groups),
                "attributes": user.attributes,
            }
            for user in sorted(self.users.values(), key=lambda user: fold(user.user_name))
            if not user.deleted
        ]
        groups: list[dict[str, Any]] = [
            {
                "id": str(group_id),
                "displayName": self.group_name(group_id),
                "linked": group.linked,
                "members": sorted(
                    str(user.id)
                    for user in self.users.values()
                    if str(group_id) in user.groups and not user.deleted
                ),
            }
            for group_id, group in sorted(self.groups.items(), key=lambda item: self.group_name(item[0]))
            if self.live_group(group_id)
        ]
        memberships = [
            {
                "user": member,
                "userName": self.users[uuid.UUID(member)].user_name,
                "group": group["id"],
                "displayName": group["displayName"],
            }
            for group in groups
            for member in group["members"]
        ]
        return {"users": users, "groups": groups, "memberships": memberships}


async def as_of(connection: Connection, org_id: uuid.UUID, at: datetime.datetime, prefix: str) -> Snapshot:
    """Every aggregate at `at`, replayed in log order and held whole: the plain statement of what a replay
    means, which tests hold `audit_state.state_at` (what the service and the CLI answer with) to."""
    snapshot = Snapshot(prefix)
    async for event in org_events(connection, org_id, until=at):
        snapshot.apply(event)
    return snapshot


# The keys of an AccessInterval's row, in order: the columns of a review's table or CSV, even an empty one.
REVIEW_COLUMNS = (
    "user_id",
    "userName",
    "group_id",
    "project",
    "role",
    "from",
    "to",
    "granted_by",
    "granted_by_label",
    "grant_cause",
    "revoked_by",
    "revoked_by_label",
    "revoke_cause",
)


@dataclass
class AccessInterval:
    user_id: str
    user_name: str
    group_id: str
    project: str
    role: str
    valid_from: datetime.datetime
    valid_to: datetime.datetime | None
    granted_by: str
    grant_cause: str
    revoked_by: str | None = None
    revoke_cause: str | None = None

    def to_row(self, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """As the review lists it; `labels` names the tokens among its actors (see tenancy.actor_labels)."""
        labels = labels or {}
        return {
            "user_id": self.user_id,
            "userName": self.user_name,
            "group_id": self.group_id,
            "project": self.project,
            "role": self.role,
            "from": self.valid_from.isoformat(),
            "to": self.valid_to.isoformat() if self.valid_to else None,
            "granted_by": self.granted_by,
            "granted_by_label": labels.get(self.granted_by),
            "grant_cause": self.grant_cause,
            "revoked_by": self.revoked_by,
            "revoked_by_label": labels.get(self.revoked_by) if self.revoked_by else None,
            "revoke_cause": self.revoke_cause,
        }


def actors_of(intervals: Iterable[AccessInterval]) -> set[str]:
    """Who granted and who revoked the intervals: the actors whose names a review shows."""
    actors = set()
    for interval in intervals:
        actors.add(interval.granted_by)
        if interval.revoked_by is not None:
            actors.add(interval.revoked_by)
    return actors


class AccessReplay:
    """Who held which Project × Role at some point in [start, end], from when to when, granted and revoked by
    whom: fed the organization's events in log order, from its first (`apply`), then asked (`intervals`).
    Project and role are matched by id or by name (as it was at the time); user by id or userName.

    Free of the database, so that `access` (from the log) and an evidence bundle's verifier (from the events
    in the bundle, see projections/bundles.py) answer with one implementation."""

    def __init__(
        self,
        prefix: str,
        start: datetime.datetime,
        end: datetime.datetime,
        project: str | None = None,
        role: str | None = None,
        user: str | None = None,
    ) -> None:
        self.snapshot = Snapshot(prefix)
        self.start, self.end = start, end
        self.project, self.role, self.user = project, role, user
        self.open_intervals: dict[tuple[str, str], AccessInterval] = {}
        self.closed: list[AccessInterval] = []

    def apply(self, event: RecordedEvent) -> None:
        # Every event, past the window too: a grant still open at its end ends when it was revoked, even long
        # after, and leaving `to` blank would read as "still has access". Grants after the window open nothing.
        snapshot = self.snapshot
        snapshot.apply(event)
        if event.type not in MEMBERSHIP_EVENT_TYPE_NAMES:
            return
        key = (str(event.stream_id), event.payload["group_id"])
        if event.type == User.JoinedGroup.TOPIC:
            if event.recorded_at > self.end:
                return
            group = snapshot.groups[uuid.UUID(key[1])]
            self.open_intervals[key] = AccessInterval(
                key[0],
                snapshot.users[event.stream_id].user_name,
                key[1],
                snapshot.projects[uuid.UUID(group.project_id)].name,
                snapshot.roles[uuid.UUID(group.role_id)].name,
                event.recorded_at,
                None,
                event.actor,
                event.payload.get("cause", ""),
            )
        elif key in self.open_intervals:
            interval = self.open_intervals.pop(key)
            interval.valid_to, interval.revoked_by = event.recorded_at, event.actor
            interval.revoke_cause = event.payload.get("cause")
            self.closed.append(interval)

    def _wanted(self, interval: AccessInterval) -> bool:
        if interval.valid_from > self.end or (
            interval.valid_to is not None and interval.valid_to < self.start
        ):
            return False
        group = self.snapshot.groups[uuid.UUID(interval.group_id)]
        if self.project is not None and fold(self.project) not in (fold(interval.project), group.project_id):
            return False
        if self.role is not None and fold(self.role) not in (fold(interval.role), group.role_id):
            return False
        return self.user is None or fold(self.user) in (interval.user_id, fold(interval.user_name))

    def intervals(self) -> list[AccessInterval]:
        wanted = [
            interval for interval in [*self.closed, *self.open_intervals.values()] if self._wanted(interval)
        ]
        return sorted(
            wanted,
            key=lambda interval: (interval.valid_from, interval.user_name, interval.project, interval.role),
        )


async def access(
    connection: Connection,
    org_id: uuid.UUID,
    prefix: str,
    start: datetime.datetime,
    end: datetime.datetime,
    project: str | None = None,
    role: str | None = None,
    user: str | None = None,
) -> list[AccessInterval]:
    """The access review of `AccessReplay`, from the log. Needs a transaction."""
    replay = AccessReplay(prefix, start, end, project, role, user)
    async for event in org_events(connection, org_id):
        replay.apply(event)
    return replay.intervals()
