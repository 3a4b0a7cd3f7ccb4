"""The catalog and the SCIM view of groups: catalog_projects, catalog_roles, scim_groups, group_members.

One projector applies events to these tables, whether they were just appended (inline, in the appending
transaction) or replayed from the whole log (a rebuild), so the two cannot drift apart. A group's
meta.version is the log position of the last event that changed it.
"""

from __future__ import annotations

import datetime
import functools
import re
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from eventsourcing.utils import get_topic

from domain.catalog import ENTITY_KIND_OF_EVENT, Group, Project, Role
from domain.catalog import EVENT_TYPES as CATALOG_EVENT_TYPES
from domain.errors import DomainError, GroupNameTaken, NameTaken
from domain.users import MEMBERSHIP_EVENT_TYPE_NAMES, User
from eventstore.pool import Connection
from eventstore.records import RecordedEvent
from projections.arrays import columns_of
from projections.scim_paging import PagedQuery, PageEnds
from projections.scim_sql import Column, Parameters, QueryCompiler, Relation
from scim.core_schemas import GROUP
from scim.filter_tree import AttrPath, Compare
from scim.query import ListQuery

GROUP_COLUMNS = {
    "id": Column("scim_groups.group_id::text", case_exact=True, unique=True),
    "displayName": Column("scim_groups.display_name", unique=True),
    "externalId": Column("NULL::text", case_exact=True),
    "meta.created": Column("scim_groups.created", "dateTime"),
    "meta.lastModified": Column("scim_groups.last_modified", "dateTime"),
    "meta.resourceType": Column("'Group'::text", case_exact=True),
}
GROUP_RELATIONS = {
    "members": Relation(
        source="group_members AS member JOIN scim_users AS member_user "
        "ON member_user.org_id = member.org_id AND member_user.user_id = member.user_id",
        correlation="member.org_id = scim_groups.org_id AND member.group_id = scim_groups.group_id",
        columns={
            "value": Column("member.user_id::text", case_exact=True),
            "display": Column("coalesce(member_user.resource->>'displayName', member_user.user_name)"),
            "type": Column("'User'::text", case_exact=True),
        },
    )
}
GROUP_QUERIES = QueryCompiler(GROUP, GROUP_COLUMNS, relations=GROUP_RELATIONS)

EVENT_TYPES = (
    frozenset({get_topic(event_type) for event_type in CATALOG_EVENT_TYPES}) | MEMBERSHIP_EVENT_TYPE_NAMES
)


class GroupRow(msgspec.Struct, frozen=True):
    group_id: uuid.UUID
    display_name: str
    created: datetime.datetime
    last_modified: datetime.datetime
    version: int
    linked: bool
    project_id: uuid.UUID
    role_id: uuid.UUID


class Member(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    display: str


class GroupPage(msgspec.Struct, frozen=True):
    total: int
    rows: list[GroupRow]


_GROUP_FIELDS = "group_id, display_name, created, last_modified, version, linked, project_id, role_id"
GROUP_PAGES = PagedQuery("scim_groups", _GROUP_FIELDS, GROUP_QUERIES, id_column="group_id")


class GroupProjector:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def display_name(self, project: str, role: str) -> str:
        return f"{self.prefix}-{project}-{role}"

    async def apply(
        self, connection: Connection, recorded: Sequence[RecordedEvent], riding: Riding | None = None
    ) -> None:
        """Apply the catalog, group and membership events among `recorded`, in order. Consecutive membership
        changes go in one statement (a rebuild replays thousands of them, a full resync hundreds). `riding`,
        given only when `recorded` holds membership changes, is written by the statement of the first run."""
        try:
            changes: list[RecordedEvent] = []
            for event in recorded:
                if event.type in MEMBERSHIP_EVENT_TYPE_NAMES:
                    changes.append(event)
                    continue
                if changes:
                    await _apply_memberships(connection, changes, riding)
                    changes, riding = [], None
                if event.type in EVENT_TYPES:
                    await self._apply_one(connection, event)
            if changes:
                await _apply_memberships(connection, changes, riding)
                riding = None
        except asyncpg.UniqueViolationError as error:
            raise _name_taken(error) from error
        assert riding is None, "a riding write was given with no membership change to carry it"

    async def _apply_one(self, connection: Connection, event: RecordedEvent) -> None:
        org_id, payload = event.org_id, event.payload
        match event.type:
            case Project.Created.TOPIC | Role.Created.TOPIC:
                table, key = _catalog_table(event.type)
                await connection.execute(
                    f"INSERT INTO {table} (org_id, {key}, name, created) VALUES ($1, $2, $3, $4)",
                    org_id,
                    event.stream_id,
                    payload["name"],
                    event.occurred_at,
                )
            case Project.Renamed.TOPIC | Role.Renamed.TOPIC:
                table, key = _catalog_table(event.type)
                await connection.execute(
                    f"UPDATE {table} SET name = $3 WHERE org_id = $1 AND {key} = $2",
                    org_id,
                    event.stream_id,
                    payload["name"],
                )
                await self._rename_groups(connection, event, key)
            case Project.Archived.TOPIC | Role.Archived.TOPIC:
                table, key = _catalog_table(event.type)
                await connection.execute(
                    f"UPDATE {table} SET archived = true WHERE org_id = $1 AND {key} = $2",
                    org_id,
                    event.stream_id,
                )
                # The members were removed by GroupMemberRemoved events of their own; the groups leave SCIM.
                await connection.execute(
                    f"DELETE FROM group_members WHERE org_id = $1 AND group_id IN "
                    f"(SELECT group_id FROM scim_groups WHERE org_id = $1 AND {key} = $2)",
                    org_id,
                    event.stream_id,
                )
                await connection.execute(
                    f"DELETE FROM scim_groups WHERE org_id = $1 AND {key} = $2", org_id, event.stream_id
                )
            case Group.Created.TOPIC:
                # Only the pair of a live project and a live role has a group in SCIM. A group recorded after
                # its project or role was archived (as a race between two admins once could) stays out, as it
                # would have, had the archive come second and removed it.
                await connection.execute(
                    "INSERT INTO scim_groups (org_id, group_id, project_id, role_id, display_name, created, "
                    "last_modified, version, sort_key) "
                    "SELECT $1, $2, $3, $4, $5 || '-' || project.name || '-' || role.name, $6, $6, $7, $7 "
                    "FROM catalog_projects AS project, catalog_roles AS role "
                    "WHERE project.org_id = $1 AND project.project_id = $3 AND role.org_id = $1 AND role.role_id = $4 "
                    "AND NOT project.archived AND NOT role.archived",
                    org_id,
                    event.stream_id,
                    uuid.UUID(payload["project_id"]),
                    uuid.UUID(payload["role_id"]),
                    self.prefix,
                    event.occurred_at,
                    event.position,
                )
            case Group.Linked.TOPIC | Group.Unlinked.TOPIC:
                await connection.execute(
                    "UPDATE scim_groups SET linked = $3, version = $4, last_modified = $5 "
                    "WHERE org_id = $1 AND group_id = $2",
                    org_id,
                    event.stream_id,
                    event.type == Group.Linked.TOPIC,
                    event.position,
                    event.occurred_at,
                )

    async def _rename_groups(self, connection: Connection, event: RecordedEvent, key: str) -> None:
        await connection.execute(
            f"UPDATE scim_groups AS grp SET display_name = $3 || '-' || project.name || '-' || role.name, "
            f"version = $4, last_modified = $5 "
            f"FROM catalog_projects AS project, catalog_roles AS role "
            f"WHERE grp.org_id = $1 AND grp.{key} = $2 AND project.org_id = grp.org_id "
            f"AND project.project_id = grp.project_id AND role.org_id = grp.org_id AND role.role_id = grp.role_id",
            event.org_id,
            event.stream_id,
            self.prefix,
            event.position,
            event.occurred_at,
        )

    async def rebuild_org(
        self, connection: Connection, org_id: uuid.UUID, recorded: Sequence[RecordedEvent]
    ) -> None:
        """As `rebuild`, for one organization's rows: `recorded` holds that organization's events only."""
        for table in ("group_members", "scim_groups", "catalog_projects", "catalog_roles"):
            await connection.execute(f"DELETE FROM {table} WHERE org_id = $1", org_id)
        await self.apply(connection, recorded)

    async def rebuild(self, connection: Connection, recorded: Sequence[RecordedEvent]) -> None:
        """Empty the tables, then apply `recorded` (the whole log's relevant events, in log order)."""
        await connection.execute("DELETE FROM group_members")
        await connection.execute("DELETE FROM scim_groups")
        await connection.execute("DELETE FROM catalog_projects")
        await connection.execute("DELETE FROM catalog_roles")
        await self.apply(connection, recorded)


# The net effect of a run of membership changes, applied one by one, in one statement: a removal deletes
# the row; an addition inserts it with the addition's time unless the member is already there, except that
# an addition after a removal in the same run replaces the row (its time is that of the first addition
# after the last removal). Members are added only to groups that exist, and only groups that exist have
# members (archiving removes them), so a run cannot change which groups exist. Every change moves its
# group's version and lastModified, the last change in the run winning.
_APPLY_MEMBERSHIPS = """
WITH removed AS (
    DELETE FROM group_members AS member
    USING unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS gone(org_id, group_id, user_id)
    WHERE member.org_id = gone.org_id AND member.group_id = gone.group_id AND member.user_id = gone.user_id
), added AS (
    INSERT INTO group_members (org_id, group_id, user_id, added)
    SELECT new.org_id, new.group_id, new.user_id, new.added
    FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::timestamptz[]) AS new(org_id, group_id, user_id, added)
    WHERE EXISTS (SELECT FROM scim_groups AS grp WHERE grp.org_id = new.org_id AND grp.group_id = new.group_id)
    ON CONFLICT (org_id, group_id, user_id) DO NOTHING
), readded AS (
    INSERT INTO group_members (org_id, group_id, user_id, added)
    SELECT new.org_id, new.group_id, new.user_id, new.added
    FROM unnest($8::uuid[], $9::uuid[], $10::uuid[], $11::timestamptz[]) AS new(org_id, group_id, user_id, added)
    WHERE EXISTS (SELECT FROM scim_groups AS grp WHERE grp.org_id = new.org_id AND grp.group_id = new.group_id)
    ON CONFLICT (org_id, group_id, user_id) DO UPDATE SET added = EXCLUDED.added
)
UPDATE scim_groups AS grp SET version = changed.version, last_modified = changed.last_modified
FROM unnest($12::uuid[], $13::uuid[], $14::bigint[], $15::timestamptz[])
     AS changed(org_id, group_id, version, last_modified)
WHERE grp.org_id = changed.org_id AND grp.group_id = changed.group_id
"""

_APPLY_MEMBERSHIPS_PARAMETERS = 15
_Pair = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # org, group, user

# Another projection's write of the same membership changes (access_grants'), sent in their statement so that
# it costs no round trip of its own: common table expressions, their parameters numbered from $1, and the
# parameters.
Riding = tuple[str, Sequence[Any]]


@functools.lru_cache(maxsize=8)
def _with_riding(ctes: str) -> str:
    """_APPLY_MEMBERSHIPS led by `ctes`, whose parameters follow its own. Their statements and the
    memberships' write different tables, so the order in which PostgreSQL runs them does not matter."""
    shifted = re.sub(r"\$(\d+)", lambda number: f"${int(number[1]) + _APPLY_MEMBERSHIPS_PARAMETERS}", ctes)
    return f"WITH {shifted},\n{_APPLY_MEMBERSHIPS.split('WITH ', 1)[1]}"


async def _apply_memberships(
    connection: Connection, changes: Sequence[RecordedEvent], riding: Riding | None = None
) -> None:
    removed: set[_Pair] = set()
    added: dict[_Pair, datetime.datetime] = {}
    readded: dict[_Pair, datetime.datetime] = {}
    groups: dict[tuple[uuid.UUID, uuid.UUID], tuple[int, datetime.datetime]] = {}
    for event in changes:
        group_id = uuid.UUID(event.payload["group_id"])
        pair = (event.org_id, group_id, event.stream_id)
        groups[(event.org_id, group_id)] = (event.position, event.occurred_at)
        if event.type == User.LeftGroup.TOPIC:
            removed.add(pair)
            added.pop(pair, None)
            readded.pop(pair, None)
        elif pair in removed:
            removed.discard(pair)
            readded[pair] = event.occurred_at
        elif pair not in readded:
            added.setdefault(pair, event.occurred_at)
    await connection.execute(
        _APPLY_MEMBERSHIPS if riding is None else _with_riding(riding[0]),
        *columns_of(list(removed), 3),
        *columns_of([(*pair, at) for pair, at in added.items()], 4),
        *columns_of([(*pair, at) for pair, at in readded.items()], 4),
        *columns_of([(*group, *change) for group, change in groups.items()], 4),
        *(riding[1] if riding is not None else ()),
    )


# The catalog table, and its key column, of each kind of entity.
_CATALOG_TABLES = {"project": ("catalog_projects", "project_id"), "role": ("catalog_roles", "role_id")}


def _catalog_table(event_type: str) -> tuple[str, str]:
    """The catalog table, and its key column, that a project's or a role's event belongs to."""
    return _CATALOG_TABLES[ENTITY_KIND_OF_EVENT[event_type]]


def _name_taken(error: asyncpg.UniqueViolationError) -> DomainError:
    constraint = getattr(error, "constraint_name", "") or ""
    if constraint.startswith("catalog_projects"):
        return NameTaken("The organization already has a project of that name.")
    if constraint.startswith("catalog_roles"):
        return NameTaken("The organization already has a role of that name.")
    return GroupNameTaken(
        "This would give a group the name of another group of the organization (ignoring case), which Okta "
        "could not tell apart when linking by name. Choose another project or role name."
    )


class NameHolder(msgspec.Struct, frozen=True):
    """A group as an admin knows it: its name as spelled, and the Project × Role pair it belongs to."""

    group_id: uuid.UUID
    display_name: str
    project: str
    role: str


async def holder_of_name(connection: Connection, org_id: uuid.UUID, display_name: str) -> NameHolder | None:
    """The group that holds `display_name`, compared as `displayName eq` compares names: the lookup Okta links
    groups by, which the names' unique index keeps to one group at most."""
    parameters = Parameters(offset=1)
    same_name = GROUP_QUERIES.where(Compare(AttrPath(None, "displayName"), "eq", display_name), parameters)
    row = await connection.fetchrow(
        "SELECT scim_groups.group_id, scim_groups.display_name, project.name, role.name FROM scim_groups "
        "JOIN catalog_projects AS project "
        "ON project.org_id = scim_groups.org_id AND project.project_id = scim_groups.project_id "
        "JOIN catalog_roles AS role ON role.org_id = scim_groups.org_id AND role.role_id = scim_groups.role_id "
        f"WHERE scim_groups.org_id = $1 AND {same_name}",
        org_id,
        *parameters.values,
    )
    return NameHolder(*row) if row is not None else None


async def get(connection: Connection, org_id: uuid.UUID, group_id: uuid.UUID) -> GroupRow | None:
    row = await connection.fetchrow(
        f"SELECT {_GROUP_FIELDS} FROM scim_groups WHERE org_id = $1 AND group_id = $2", org_id, group_id
    )
    return GroupRow(*row) if row is not None else None


async def query(
    connection: Connection, org_id: uuid.UUID, listing: ListQuery, page_ends: PageEnds | None = None
) -> GroupPage:
    """One page in a stable order: `sortBy` first if given, then creation order."""
    total, rows = await GROUP_PAGES.fetch(connection, org_id, listing, page_ends)
    return GroupPage(total, [GroupRow(*row) for row in rows])


async def members_of(
    connection: Connection, org_id: uuid.UUID, group_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Member]]:
    rows = await connection.fetch(
        "SELECT member.group_id, member.user_id, coalesce(account.resource->>'displayName', account.user_name) "
        "FROM group_members AS member JOIN scim_users AS account "
        "ON account.org_id = member.org_id AND account.user_id = member.user_id "
        "WHERE member.org_id = $1 AND member.group_id = ANY($2::uuid[]) ORDER BY member.added, member.user_id",
        org_id,
        list(group_ids),
    )
    members: dict[uuid.UUID, list[Member]] = {group_id: [] for group_id in group_ids}
    for group_id, user_id, display in rows:
        members[group_id].append(Member(user_id, display))
    return members


async def member_ids(connection: Connection, org_id: uuid.UUID, group_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await connection.fetch(
        "SELECT user_id FROM group_members WHERE org_id = $1 AND group_id = $2", org_id, group_id
    )
    return {row["user_id"] for row in rows}
