"""`scimledger group repair`: the way back for an organization whose catalog concurrent admins damaged.

Before catalog changes were serialised (see `lock_catalog`), two admins at once could leave a live Project ×
Role pair with no group, a group of an archived project or role that Okta could still link and fill, or
groups with stale names. The repair records what the log lacks, as events an auditor reads like any other:
a `GroupCreated` for each live pair that never had one; for each group of an archived pair that still has
members or a link, a `GroupMemberRemoved` per member (cause "archive") and a `GroupUnlinked`, as archiving
would have recorded. Then it replays the organization's groups, memberships and catalog from the log, so that
names, versions and which groups exist are what a rebuild would give. Running it again changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.services.catalog import CatalogService, lock_catalog
from domain.catalog import Group, group_id_for
from domain.users import User
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import ASSIGNED_TX, EventStore, Transaction
from projections.scim import GROUP_TABLES, ScimProjection
from projections.scim_groups import GroupProjector


@dataclass(frozen=True, slots=True)
class Repair:
    created: int  # groups recorded for live pairs that had none
    retired: int  # groups of archived pairs that were still in SCIM, linked or with members
    revoked: int  # memberships of those groups, ended with cause "archive"
    renamed: int  # groups whose displayName the replay corrected


# Groups of the organization's archived pairs, from the log: a projection that missed one cannot hide it.
_GROUPS_OF_ARCHIVED_PAIRS = f"""
SELECT created.stream_id FROM events AS created
WHERE created.org_id = $1 AND created.type = '{Group.Created.TOPIC}' AND {ASSIGNED_TX}
  AND (EXISTS (SELECT FROM catalog_projects AS project WHERE project.org_id = $1
               AND project.project_id = (created.payload->>'project_id')::uuid AND project.archived)
       OR EXISTS (SELECT FROM catalog_roles AS role WHERE role.org_id = $1
                  AND role.role_id = (created.payload->>'role_id')::uuid AND role.archived))
ORDER BY created.stream_id
"""

# The users whose last membership event for one of the groups `$2` added them: the grants still open.
_OPEN_MEMBERSHIPS = f"""
SELECT user_id, group_id FROM (
    SELECT DISTINCT ON (stream_id, payload->>'group_id') stream_id AS user_id,
           (payload->>'group_id')::uuid AS group_id, type
    FROM events
    WHERE org_id = $1 AND type IN ('{User.JoinedGroup.TOPIC}', '{User.LeftGroup.TOPIC}')
      AND payload->>'group_id' = ANY($2::text[]) AND {ASSIGNED_TX}
    ORDER BY stream_id, payload->>'group_id', version DESC
) AS last_change
WHERE type = '{User.JoinedGroup.TOPIC}'
"""

_LIVE_PAIRS = """
SELECT project.project_id, role.role_id, project.name, role.name
FROM catalog_projects AS project JOIN catalog_roles AS role ON role.org_id = project.org_id
WHERE project.org_id = $1 AND NOT project.archived AND NOT role.archived
ORDER BY project.created, project.project_id, role.created, role.role_id
"""


async def repair(
    store: EventStore, projection: ScimProjection, org_id: uuid.UUID, metadata: Metadata
) -> Repair:
    catalog = CatalogService(store, projection.groups)
    async with store.transaction() as transaction:
        connection = transaction.connection
        await lock_catalog(connection, org_id)
        archived = [row[0] for row in await connection.fetch(_GROUPS_OF_ARCHIVED_PAIRS, org_id)]
        # Okta's writes to a group lock its stream first, then the group tables: in that order here too.
        for group_id in archived:
            await transaction.lock_stream(group_id)
        # The replay below rewrites these rows: writers wait for it, as they wait for a rebuild.
        await connection.execute(f"LOCK TABLE {GROUP_TABLES} IN EXCLUSIVE MODE")
        names_before = await _group_names(connection, org_id)
        created = await _missing_groups(transaction, org_id, projection.groups)
        retired, users = await _retired_groups(transaction, org_id, archived, set(names_before))
        revoked = sum(len(user.pending_events) for user in users)
        await catalog.save_naming_groups(
            transaction,
            org_id,
            [*(group for group, _ in created), *users, *retired],
            metadata,
            [(group.id, name) for group, name in created],
        )
        await projection.rebuild_groups_of(connection, org_id)
        names_after = await _group_names(connection, org_id)
    renamed = sum(1 for group_id, name in names_after.items() if names_before.get(group_id, name) != name)
    return Repair(len(created), len(retired), revoked, renamed)


async def _group_names(connection: Connection, org_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = await connection.fetch("SELECT group_id, display_name FROM scim_groups WHERE org_id = $1", org_id)
    return {row[0]: row[1] for row in rows}


async def _missing_groups(
    transaction: Transaction, org_id: uuid.UUID, groups: GroupProjector
) -> list[tuple[Group, str]]:
    """New groups, with their names, for the live pairs whose group was never recorded."""
    pairs = {
        group_id_for(row[0], row[1]): row for row in await transaction.connection.fetch(_LIVE_PAIRS, org_id)
    }
    recorded = await transaction.read_streams(org_id, list(pairs))
    return [
        (
            Group(org_id=str(org_id), project_id=str(project_id), role_id=str(role_id)),
            groups.display_name(project, role),
        )
        for group_id, (project_id, role_id, project, role) in pairs.items()
        if group_id not in recorded
    ]


async def _retired_groups(
    transaction: Transaction, org_id: uuid.UUID, archived: list[uuid.UUID], in_scim: set[uuid.UUID]
) -> tuple[list[Group], list[User]]:
    """The groups of archived pairs still in SCIM, linked or with members, let go as archiving lets go of
    them (members first, then the link); and their members, who leave them."""
    open_grants = await transaction.connection.fetch(
        _OPEN_MEMBERSHIPS, org_id, [str(id_) for id_ in archived]
    )
    user_ids = list(dict.fromkeys(row[0] for row in open_grants))
    loaded = await transaction.load(org_id, [*archived, *user_ids])
    for user_id, group_id in open_grants:
        loaded[user_id].leave_group(str(group_id), "archive")
    groups: list[Group] = []
    with_members = {row[1] for row in open_grants}
    for group_id in archived:
        group = loaded[group_id]
        group.unlink("archive")
        if group.pending_events or group_id in in_scim or group_id in with_members:
            groups.append(group)
    return groups, [loaded[user_id] for user_id in user_ids]
