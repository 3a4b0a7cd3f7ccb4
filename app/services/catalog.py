"""The app side of the catalog: org admins create, rename and archive projects and roles.

Creating a project creates the group of each of its pairs with the org's live roles (and a role, with the
live projects). Archiving one removes its groups from SCIM: every member loses that access, recorded as
GroupMemberRemoved with cause "archive", and a linked group records GroupUnlinked. An organization's catalog
changes run one at a time (`lock_catalog`).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from eventsourcing.domain import Aggregate

from domain.catalog import Group, Project, Role, checked_name
from domain.errors import GroupNameTaken, NotFound
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import EventStore, Transaction
from projections import scim_groups
from projections.scim_groups import GroupProjector


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    aggregate: type[Project] | type[Role]
    table: str
    key: str
    other_table: str
    other_key: str


PROJECT = Kind("project", Project, "catalog_projects", "project_id", "catalog_roles", "role_id")
ROLE = Kind("role", Role, "catalog_roles", "role_id", "catalog_projects", "project_id")
KINDS = {kind.name: kind for kind in (PROJECT, ROLE)}


def _pair(kind: Kind, entity_id: uuid.UUID, other_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """(project id, role id) of the pair of a `kind` entity with one of the other kind."""
    return (entity_id, other_id) if kind is PROJECT else (other_id, entity_id)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: uuid.UUID
    name: str
    archived: bool
    created: datetime.datetime


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: uuid.UUID
    display_name: str
    linked: bool
    members: int
    project_id: uuid.UUID
    role_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ArchiveImpact:
    groups: int
    linked_groups: int
    memberships: int


@dataclass(frozen=True, slots=True)
class MemberListing:
    user_id: uuid.UUID
    user_name: str
    display_name: str | None
    since: datetime.datetime


class EntryKey(msgspec.Struct, frozen=True):
    """Where a listing of projects or roles stands: its last entry, in the listing's order."""

    name: str
    created: datetime.datetime
    id: uuid.UUID


class GroupKey(msgspec.Struct, frozen=True):
    display_name: str
    id: uuid.UUID


class MemberKey(msgspec.Struct, frozen=True):
    since: datetime.datetime
    user_id: uuid.UUID


# The class of the catalog's advisory locks: the two-key form keeps them apart from the single-key stream locks
# (`Transaction.lock_stream`), which PostgreSQL keeps in a key space of their own. The second key is a 32-bit
# hash of the org id: two orgs that hash alike merely take turns.
_CATALOG_LOCKS = 0x5C1CA7A1


async def lock_catalog(connection: Connection, org_id: uuid.UUID) -> None:
    """Queue behind the organization's other catalog changes until this transaction ends.

    A catalog change reads what the others write: a new project pairs with the live roles, an archive lets go
    of the groups there are, a rename rewrites names joined from both tables. Under READ COMMITTED, two at once
    each miss the other's uncommitted rows: a pair left without a group, a group of an archived role, a stale
    name. Holding this lock, every later statement sees what the previous holder committed.

    A lock rather than one catalog stream per organization: a loser waits instead of failing and retrying the
    whole change, and the log records no bookkeeping event. It must be the transaction's first statement: a
    transaction gets its id at its first write, so the holders append in lock order and the log's order (tx,
    position) replays their changes in the order they happened; and a waiter that has written nothing holds no
    transaction id, so it holds back neither the runner (which reads below the oldest running one) nor anyone
    else. Only catalog changes take it, in their explicit transaction (an advisory lock taken by a statement
    outside one would end with it); Okta's writes never wait on it.
    """
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1::int, hashtext($2::uuid::text))", _CATALOG_LOCKS, org_id
    )


class CatalogService:
    def __init__(self, store: EventStore, groups: GroupProjector) -> None:
        self._store = store
        self._groups = groups  # for the groups' names only: the store projects what is saved

    async def create(
        self, kind: Kind, org_id: uuid.UUID, name: str, metadata: Metadata
    ) -> tuple[uuid.UUID, int]:
        """Create a project or role and the group of each of its new pairs; returns its id and the group count."""
        entity = kind.aggregate(org_id=str(org_id), name=checked_name(name, kind.name))
        async with self._store.transaction() as transaction:
            connection = transaction.connection
            await lock_catalog(connection, org_id)
            others = await connection.fetch(
                f"SELECT {kind.other_key}, name FROM {kind.other_table} WHERE org_id = $1 AND NOT archived "
                f"ORDER BY created",
                org_id,
            )
            groups = [
                Group(org_id=str(org_id), project_id=str(project_id), role_id=str(role_id))
                for project_id, role_id in (_pair(kind, entity.id, row[0]) for row in others)
            ]
            names = [
                (group.id, self._group_name(kind, entity.name, row[1]))
                for group, row in zip(groups, others, strict=True)
            ]
            await self.save_naming_groups(transaction, org_id, [entity, *groups], metadata, names)
        return entity.id, len(groups)

    async def rename(
        self, kind: Kind, org_id: uuid.UUID, reference: str, name: str, metadata: Metadata
    ) -> None:
        async with self._store.transaction() as transaction:
            connection = transaction.connection
            await lock_catalog(connection, org_id)
            entity_id = await self.find(connection, kind, org_id, reference)
            others = await connection.fetch(
                f"SELECT grp.group_id, other.name FROM scim_groups AS grp JOIN {kind.other_table} AS other "
                f"ON other.org_id = grp.org_id AND other.{kind.other_key} = grp.{kind.other_key} "
                f"WHERE grp.org_id = $1 AND grp.{kind.key} = $2 ORDER BY grp.group_id",
                org_id,
                entity_id,
            )
            # The rename moves each group's version and lastModified, as Okta's writes to the group do. They
            # queue on the group's stream lock before they write anything; so does the rename, in id order as
            # archive does. Otherwise one that recorded its event first could write the row last, and the row
            # would keep the older event's version, where a rebuild, applying the log in order, keeps the newer.
            for row in others:
                await transaction.lock_stream(row[0])
            entity = (await transaction.load(org_id, [entity_id]))[entity_id]
            entity.rename(name)
            names = [(row[0], self._group_name(kind, entity.name, row[1])) for row in others]
            await self.save_naming_groups(transaction, org_id, [entity], metadata, names)

    async def archive(self, kind: Kind, org_id: uuid.UUID, reference: str, metadata: Metadata) -> int:
        """Archive; returns how many memberships were revoked."""
        async with self._store.transaction() as transaction:
            connection = transaction.connection
            await lock_catalog(connection, org_id)
            entity_id = await self.find(connection, kind, org_id, reference)
            group_ids = [
                row[0]
                for row in await connection.fetch(
                    f"SELECT group_id FROM scim_groups WHERE org_id = $1 AND {kind.key} = $2 ORDER BY group_id",
                    org_id,
                    entity_id,
                )
            ]
            for group_id in group_ids:  # in id order, so that two archives cannot deadlock
                await transaction.lock_stream(group_id)
            memberships = await connection.fetch(
                "SELECT group_id, user_id FROM group_members WHERE org_id = $1 AND group_id = ANY($2::uuid[])",
                org_id,
                group_ids,
            )
            loaded = await transaction.load(org_id, [entity_id, *group_ids, *{row[1] for row in memberships}])
            entity = loaded.pop(entity_id)
            entity.archive()
            for group_id, user_id in memberships:
                loaded[user_id].leave_group(str(group_id), "archive")
            for group_id in group_ids:
                loaded[group_id].unlink("archive")
            users = {key: value for key, value in loaded.items() if key not in group_ids}
            groups = [loaded[group_id] for group_id in group_ids]
            # Members lose access first, then the groups are let go: the order DELETE /Groups records too.
            await transaction.save(org_id, [entity, *users.values(), *groups], metadata)
            return len(memberships)

    async def save_naming_groups(
        self,
        transaction: Transaction,
        org_id: uuid.UUID,
        aggregates: Sequence[Aggregate],
        metadata: Metadata,
        names: Sequence[tuple[uuid.UUID, str]],
    ) -> None:
        """Save a catalog change that gives the groups `names` (id, new name) their names.

        When a name is another group's already, the unique index refuses it without saying whose; so the save
        (the append, then the projection the store writes with it) runs in a savepoint, after which the
        transaction can still look the holder up, and the admin learns which group has the name, as it is
        spelled, and which project and role hold it. The savepoint wraps the append too, which costs no round
        trip more than wrapping the projection alone did.
        """
        connection = transaction.connection
        try:
            async with connection.transaction():
                await transaction.save(org_id, aggregates, metadata)
        except GroupNameTaken:
            for group_id, name in names:
                holder = await scim_groups.holder_of_name(connection, org_id, name)
                if holder is not None and holder.group_id != group_id:
                    raise GroupNameTaken(
                        f"The group '{name}' would have the same name as the existing group "
                        f"'{holder.display_name}' of project '{holder.project}' and role '{holder.role}' (group "
                        "names are compared ignoring case, and Okta links groups by name). Choose another "
                        "project or role name."
                    ) from None
            raise

    def _group_name(self, kind: Kind, name: str, other: str) -> str:
        project, role = (name, other) if kind is PROJECT else (other, name)
        return self._groups.display_name(project, role)

    @staticmethod
    async def find(connection: Connection, kind: Kind, org_id: uuid.UUID, reference: str) -> uuid.UUID:
        """A live project or role by id or by name (ignoring case)."""
        try:
            by_id = uuid.UUID(reference)
        except ValueError:
            by_id = None
        found: uuid.UUID | None = await connection.fetchval(
            f"SELECT {kind.key} FROM {kind.table} WHERE org_id = $1 AND NOT archived "
            f"AND ({kind.key} = $2 OR scim_fold(name) = scim_fold($3))",
            org_id,
            by_id,
            reference,
        )
        if found is None:
            raise NotFound(f"No live {kind.name} '{reference}' in this organization.")
        return found

    @staticmethod
    async def entry(
        connection: Connection, kind: Kind, org_id: uuid.UUID, entity_id: uuid.UUID
    ) -> CatalogEntry:
        row = await connection.fetchrow(
            f"SELECT {kind.key}, name, archived, created FROM {kind.table} WHERE org_id = $1 AND {kind.key} = $2",
            org_id,
            entity_id,
        )
        if row is None:
            raise NotFound(f"No {kind.name} {entity_id} in this organization.")
        return CatalogEntry(*row)

    @staticmethod
    async def entries(
        connection: Connection,
        kind: Kind,
        org_id: uuid.UUID,
        include_archived: bool,
        after: EntryKey | None = None,
        limit: int | None = None,
    ) -> list[CatalogEntry]:
        """The organization's projects or roles by name (ignoring case); those after `after`, `limit` of them."""
        rows = await connection.fetch(
            f"SELECT {kind.key}, name, archived, created FROM {kind.table} WHERE org_id = $1 "
            f"AND (NOT archived OR $2) "
            f"AND ($3::text IS NULL OR (scim_fold(name), created, {kind.key}) > (scim_fold($3), $4, $5)) "
            f"ORDER BY scim_fold(name), created, {kind.key} LIMIT $6",
            org_id,
            include_archived,
            *((after.name, after.created, after.id) if after else (None, None, None)),
            limit,
        )
        return [CatalogEntry(*row) for row in rows]

    @staticmethod
    async def groups(
        connection: Connection,
        org_id: uuid.UUID,
        after: GroupKey | None = None,
        limit: int | None = None,
        projects: Sequence[uuid.UUID] | None = None,
    ) -> list[GroupListing]:
        """The organization's groups by name (ignoring case), whether the identity provider linked each, and
        their member counts; those after `after`, `limit` of them; only those of `projects` if given (the
        rows of a page of the Project × Role matrix, in one query)."""
        rows = await connection.fetch(
            "SELECT grp.group_id, grp.display_name, grp.linked, "
            "(SELECT count(*) FROM group_members AS member "
            " WHERE member.org_id = grp.org_id AND member.group_id = grp.group_id), grp.project_id, grp.role_id "
            "FROM scim_groups AS grp WHERE grp.org_id = $1 "
            "AND ($2::text IS NULL OR (scim_fold(grp.display_name), grp.group_id) > (scim_fold($2), $3)) "
            "AND ($5::uuid[] IS NULL OR grp.project_id = ANY($5::uuid[])) "
            "ORDER BY scim_fold(grp.display_name), grp.group_id LIMIT $4",
            org_id,
            *((after.display_name, after.id) if after else (None, None)),
            limit,
            None if projects is None else list(projects),
        )
        return [GroupListing(*row) for row in rows]

    @staticmethod
    async def archive_impact(
        connection: Connection, kind: Kind, org_id: uuid.UUID, entity_id: uuid.UUID
    ) -> ArchiveImpact:
        """What archiving the project or role would take away now: its groups, those the identity provider
        linked, and the memberships `archive` would revoke (one per member of each group)."""
        row = await connection.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE grp.linked), coalesce(sum((SELECT count(*) "
            "FROM group_members AS member WHERE member.org_id = grp.org_id AND member.group_id = grp.group_id)), 0) "
            f"FROM scim_groups AS grp WHERE grp.org_id = $1 AND grp.{kind.key} = $2",
            org_id,
            entity_id,
        )
        assert row is not None  # an aggregate without GROUP BY answers one row
        return ArchiveImpact(row[0], row[1], row[2])

    @staticmethod
    async def members(
        connection: Connection,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        after: MemberKey | None = None,
        limit: int | None = None,
    ) -> list[MemberListing]:
        """A group's members, in the order they joined; those after `after`, `limit` of them. NotFound for a
        group that is not in SCIM."""
        if await scim_groups.get(connection, org_id, group_id) is None:
            raise NotFound(f"No group {group_id} in this organization.")
        rows = await connection.fetch(
            "SELECT member.user_id, account.user_name, account.resource->>'displayName', member.added "
            "FROM group_members AS member JOIN scim_users AS account "
            "ON account.org_id = member.org_id AND account.user_id = member.user_id "
            "WHERE member.org_id = $1 AND member.group_id = $2 "
            "AND ($3::timestamptz IS NULL OR (member.added, member.user_id) > ($3, $4)) "
            "ORDER BY member.added, member.user_id LIMIT $5",
            org_id,
            group_id,
            *((after.since, after.user_id) if after else (None, None)),
            limit,
        )
        return [MemberListing(*row) for row in rows]
