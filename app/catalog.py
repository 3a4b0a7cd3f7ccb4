"""The app side of the catalog: org admins create, rename and archive projects and roles.

Creating a project creates the group of each of its pairs with the org's live roles (and a role, with the
live projects). Archiving one removes its groups from SCIM: every member loses that access, recorded as
GroupMemberRemoved with cause "archive", and a linked group records GroupUnlinked.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from domain.catalog import Group, Project, Role, checked_name
from domain.errors import NotFound
from eventstore.pool import Connection
from eventstore.store import EventStore, Metadata
from projections.scim import ScimProjection


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


class CatalogService:
    def __init__(self, store: EventStore, projection: ScimProjection) -> None:
        self._store = store
        self._projection = projection

    async def create(
        self, kind: Kind, org_id: uuid.UUID, name: str, metadata: Metadata
    ) -> tuple[uuid.UUID, int]:
        """Create a project or role and the group of each of its new pairs; returns its id and the group count."""
        entity = kind.aggregate(org_id=str(org_id), name=checked_name(name, kind.name))
        async with self._store.transaction() as transaction:
            others = await transaction.connection.fetch(
                f"SELECT {kind.other_key} FROM {kind.other_table} WHERE org_id = $1 AND NOT archived "
                f"ORDER BY created",
                org_id,
            )
            pairs = [(entity.id, row[0]) if kind is PROJECT else (row[0], entity.id) for row in others]
            groups = [
                Group(org_id=str(org_id), project_id=str(project_id), role_id=str(role_id))
                for project_id, role_id in pairs
            ]
            recorded = await transaction.save(org_id, [entity, *groups], metadata)
            await self._projection.apply(transaction.connection, recorded, {})
        return entity.id, len(groups)

    async def rename(
        self, kind: Kind, org_id: uuid.UUID, reference: str, name: str, metadata: Metadata
    ) -> None:
        async with self._store.transaction() as transaction:
            entity_id = await self._find(transaction.connection, kind, org_id, reference)
            entity = (await transaction.load(org_id, [entity_id]))[entity_id]
            entity.rename(name)
            recorded = await transaction.save(org_id, [entity], metadata)
            await self._projection.apply(transaction.connection, recorded, {})

    async def archive(self, kind: Kind, org_id: uuid.UUID, reference: str, metadata: Metadata) -> int:
        """Archive; returns how many memberships were revoked."""
        async with self._store.transaction() as transaction:
            connection = transaction.connection
            entity_id = await self._find(connection, kind, org_id, reference)
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
            recorded = await transaction.save(org_id, [entity, *users.values(), *groups], metadata)
            await self._projection.apply(connection, recorded, users)
            return len(memberships)

    @staticmethod
    async def _find(connection: Connection, kind: Kind, org_id: uuid.UUID, reference: str) -> uuid.UUID:
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
    async def entries(
        connection: Connection, kind: Kind, org_id: uuid.UUID, include_archived: bool
    ) -> list[CatalogEntry]:
        rows = await connection.fetch(
            f"SELECT {kind.key}, name, archived, created FROM {kind.table} WHERE org_id = $1 "
            f"AND (NOT archived OR $2) ORDER BY scim_fold(name), created",
            org_id,
            include_archived,
        )
        return [CatalogEntry(*row) for row in rows]

    @staticmethod
    async def groups(connection: Connection, org_id: uuid.UUID) -> list[GroupListing]:
        rows = await connection.fetch(
            "SELECT grp.group_id, grp.display_name, grp.linked, "
            "(SELECT count(*) FROM group_members AS member "
            " WHERE member.org_id = grp.org_id AND member.group_id = grp.group_id) "
            "FROM scim_groups AS grp WHERE grp.org_id = $1 ORDER BY scim_fold(grp.display_name)",
            org_id,
        )
        return [GroupListing(*row) for row in rows]
