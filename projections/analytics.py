"""analytics.users, groups, memberships and membership_intervals: the access model for analysts' SQL.

An asynchronous projection, kept by the runner. Each batch is folded in memory, in log order, then written
with a fixed number of set-based statements whatever its size, so that a rebuild over millions of events
is bounded by COPY-like throughput rather than by round trips. Membership changes are collapsed per
(user, group) pair in event order, so that add, remove, add within one batch ends as it should.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from domain import catalog
from domain.catalog import Group, Project, Role
from domain.users import MEMBERSHIP_EVENT_TYPE_NAMES, User
from eventstore.pool import Connection
from eventstore.records import RecordedEvent
from eventstore.store import Transaction
from projections.analytics_profile import enterprise_columns, primary_email, profile_columns
from projections.arrays import columns_of
from scim.core_schemas import ENTERPRISE_USER

Pair = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # org, user, group
Key = tuple[uuid.UUID, uuid.UUID]  # org, entity

_USER_COLUMNS = (
    "user_name",
    "external_id",
    "display_name",
    "email",
    "active",
    "member",
    "deleted",
    "provisioned_at",
    "last_modified",
    "department",
    "manager_id",
)
_USER_TYPES = frozenset(
    {
        User.Provisioned.TOPIC,
        User.ProfileUpdated.TOPIC,
        User.Deactivated.TOPIC,
        User.Reactivated.TOPIC,
        User.Deleted.TOPIC,
        User.RemovedFromOrganization.TOPIC,
        User.JoinedOrganization.TOPIC,
        User.Erased.TOPIC,
    }
)
_CATALOG_TYPES = frozenset(catalog.EVENT_TYPE_NAMES)


# An interval is a list in this column order, written to COPY as it is; a revocation fills three slots.
_INTERVAL_COLUMNS = [
    "org_id",
    "user_id",
    "group_id",
    "project",
    "role",
    "valid_from",
    "valid_to",
    "granted_by",
    "revoked_by",
    "cause",
    "revoke_cause",
]
_VALID_TO, _REVOKED_BY, _REVOKE_CAUSE = 6, 8, 10

_PROFILE_FIELDS = {"userName": "user_name", "externalId": "external_id", "displayName": "display_name"}


@dataclass
class _Batch:
    names: dict[Key, str] = field(default_factory=dict)
    group_entities: dict[Key, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)
    catalog: dict[Key, tuple[str, str, bool]] = field(default_factory=dict)  # kind, name, archived
    new_groups: dict[Key, list[Any]] = field(default_factory=dict)
    linked: dict[Key, bool] = field(default_factory=dict)
    renamed_orgs: set[uuid.UUID] = field(default_factory=set)
    archived: list[tuple[uuid.UUID, str, uuid.UUID]] = field(default_factory=list)  # org, column, id
    new_users: dict[Key, dict[str, Any]] = field(default_factory=dict)
    user_changes: dict[Key, dict[str, Any]] = field(default_factory=dict)
    opened: dict[Pair, list[Any]] = field(default_factory=dict)
    completed: list[list[Any]] = field(default_factory=list)
    closes: list[tuple[Any, ...]] = field(default_factory=list)
    memberships: dict[Pair, tuple[Any, ...] | None] = field(default_factory=dict)
    # Users whose data was erased: their row goes, whatever the batch did to it before.
    erased: set[Key] = field(default_factory=set)


# Group ids repeat across a batch (a handful of groups, thousands of memberships): parse each once.
_group_id = functools.lru_cache(maxsize=65_536)(uuid.UUID)


class AnalyticsAccess:
    event_types: frozenset[str] | None = _USER_TYPES | MEMBERSHIP_EVENT_TYPE_NAMES | _CATALOG_TYPES
    tables = ("catalog", "groups", "users", "memberships", "membership_intervals")

    def __init__(self, schema: str = "analytics", name: str = "analytics.access") -> None:
        self.schema = schema
        self.name = name

    def relocated(self, schema: str, name: str) -> AnalyticsAccess:
        return AnalyticsAccess(schema, name)

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        connection = transaction.connection
        batch = _Batch()
        await self._load(connection, events, batch)
        for event in events:
            if event.type in _CATALOG_TYPES:
                self._catalog(event, batch)
            elif event.type in _USER_TYPES:
                self._user(event, batch)
            else:
                self._membership(event, batch)
        await self._write(connection, batch)

    async def _load(self, connection: Connection, events: Sequence[RecordedEvent], batch: _Batch) -> None:
        """What the batch needs from earlier batches: group labels and intervals left open."""
        group_keys = {
            (event.org_id, _group_id(event.payload["group_id"]))
            for event in events
            if event.type in MEMBERSHIP_EVENT_TYPE_NAMES
        }
        if group_keys:
            rows = await connection.fetch(
                f"SELECT g.org_id, g.group_id, g.project_id, g.role_id, g.project, g.role FROM {self.schema}.groups g "
                "JOIN unnest($1::uuid[], $2::uuid[]) AS k(org_id, group_id) USING (org_id, group_id)",
                [key[0] for key in group_keys],
                [key[1] for key in group_keys],
            )
            for org_id, group_id, project_id, role_id, project, role in rows:
                batch.group_entities[(org_id, group_id)] = (project_id, role_id)
                batch.names[(org_id, project_id)] = project
                batch.names[(org_id, role_id)] = role
        entity_ids = {
            (event.org_id, event.stream_id) for event in events if event.type in catalog.ENTITY_KIND_OF_EVENT
        }
        entity_ids |= {
            (event.org_id, uuid.UUID(event.payload[key]))
            for event in events
            if event.type == Group.Created.TOPIC
            for key in ("project_id", "role_id")
        }
        if entity_ids:
            rows = await connection.fetch(
                f"SELECT c.org_id, c.entity_id, c.kind, c.name, c.archived FROM {self.schema}.catalog c "
                "JOIN unnest($1::uuid[], $2::uuid[]) AS k(org_id, entity_id) USING (org_id, entity_id)",
                [key[0] for key in entity_ids],
                [key[1] for key in entity_ids],
            )
            for org_id, entity_id, kind, name, archived in rows:
                batch.names[(org_id, entity_id)] = name
                batch.catalog[(org_id, entity_id)] = (kind, name, archived)

    def _catalog(self, event: RecordedEvent, batch: _Batch) -> None:
        key = (event.org_id, event.stream_id)
        kind = catalog.ENTITY_KIND_OF_EVENT.get(event.type, "role")  # a group's events use no kind
        if event.type in (Project.Created.TOPIC, Role.Created.TOPIC):
            batch.names[key] = event.payload["name"]
            batch.catalog[key] = (kind, event.payload["name"], False)
        elif event.type in (Project.Renamed.TOPIC, Role.Renamed.TOPIC):
            batch.names[key] = event.payload["name"]
            batch.catalog[key] = (kind, event.payload["name"], batch.catalog.get(key, (kind, "", False))[2])
            batch.renamed_orgs.add(event.org_id)
        elif event.type in (Project.Archived.TOPIC, Role.Archived.TOPIC):
            batch.catalog[key] = (kind, batch.names.get(key, ""), True)
            batch.archived.append((event.org_id, f"{kind}_id", event.stream_id))
        elif event.type == Group.Created.TOPIC:
            project_id, role_id = uuid.UUID(event.payload["project_id"]), uuid.UUID(event.payload["role_id"])
            if any(batch.catalog[(event.org_id, entity)][2] for entity in (project_id, role_id)):
                # As in the SCIM projection: the pair of an archived project or role has no group, even one
                # recorded after the archive (as two admins racing once could record it).
                return
            batch.group_entities[key] = (project_id, role_id)
            batch.new_groups[key] = [
                event.org_id,
                event.stream_id,
                project_id,
                role_id,
                batch.names[(event.org_id, project_id)],
                batch.names[(event.org_id, role_id)],
                False,
                False,
                event.recorded_at,
            ]
        else:
            batch.linked[key] = event.type == Group.Linked.TOPIC

    def _user(self, event: RecordedEvent, batch: _Batch) -> None:
        key = (event.org_id, event.stream_id)
        payload = event.payload
        if event.type == User.Erased.TOPIC:
            # The person's row goes; their memberships and intervals stay, by id alone, so that counts and
            # histories of access stay true.
            batch.new_users.pop(key, None)
            batch.user_changes.pop(key, None)
            batch.erased.add(key)
            return
        if key in batch.erased:
            return  # recorded after the erasure (a reactor's late decision): nothing left to update
        if event.type == User.Provisioned.TOPIC:
            batch.new_users[key] = {
                **profile_columns(payload["attributes"]),
                "active": payload["active"],
                "member": True,
                "deleted": False,
                "provisioned_at": event.recorded_at,
                "last_modified": event.recorded_at,
            }
            return
        changes = batch.new_users.get(key) or batch.user_changes.setdefault(key, {})
        changes["last_modified"] = event.recorded_at
        if event.type == User.ProfileUpdated.TOPIC:
            for attribute, column in _PROFILE_FIELDS.items():
                if attribute in payload["changed"]:
                    changes[column] = payload["changed"][attribute]
                elif attribute in payload["removed"]:
                    changes[column] = None
            if "emails" in payload["changed"]:
                changes["email"] = primary_email(payload["changed"]["emails"])
            elif "emails" in payload["removed"]:
                changes["email"] = None
            # The extension is one top-level attribute: a change carries all of it, so what it lacks is gone.
            if ENTERPRISE_USER in payload["changed"]:
                changes.update(enterprise_columns(payload["changed"][ENTERPRISE_USER]))
            elif ENTERPRISE_USER in payload["removed"]:
                changes.update(enterprise_columns(None))
        elif event.type in (User.Deactivated.TOPIC, User.Reactivated.TOPIC):
            changes["active"] = event.type == User.Reactivated.TOPIC
        elif event.type == User.Deleted.TOPIC:
            changes["deleted"] = True
        else:
            changes["member"] = event.type == User.JoinedOrganization.TOPIC

    def _membership(self, event: RecordedEvent, batch: _Batch) -> None:
        group_id = _group_id(event.payload["group_id"])
        pair = (event.org_id, event.stream_id, group_id)
        cause = event.payload.get("cause", "")
        if event.type == User.JoinedGroup.TOPIC:
            entities = batch.group_entities.get((event.org_id, group_id))
            if entities is None:
                return  # a group that never was (see `_catalog`): as in SCIM, nobody is its member
            project_id, role_id = entities
            batch.opened[pair] = [
                event.org_id,
                event.stream_id,
                group_id,
                batch.names[(event.org_id, project_id)],
                batch.names[(event.org_id, role_id)],
                event.recorded_at,
                None,
                event.actor,
                None,
                cause,
                None,
            ]
            batch.memberships[pair] = (event.recorded_at, event.actor, cause)
            return
        interval = batch.opened.pop(pair, None)
        if interval is not None:
            interval[_VALID_TO], interval[_REVOKED_BY], interval[_REVOKE_CAUSE] = (
                event.recorded_at,
                event.actor,
                cause,
            )
            batch.completed.append(interval)
        else:  # opened in an earlier batch
            batch.closes.append(
                (event.org_id, event.stream_id, group_id, event.recorded_at, event.actor, cause)
            )
        batch.memberships[pair] = None

    async def _write(self, connection: Connection, batch: _Batch) -> None:
        if batch.catalog:
            await connection.executemany(
                f"INSERT INTO {self.schema}.catalog (org_id, entity_id, kind, name, archived) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (org_id, entity_id) DO UPDATE SET name = EXCLUDED.name, archived = EXCLUDED.archived",
                [(key[0], key[1], *value) for key, value in batch.catalog.items()],
            )
        if batch.new_groups:
            await connection.copy_records_to_table(
                "groups",
                schema_name=self.schema,
                records=list(batch.new_groups.values()),
                columns=[
                    "org_id",
                    "group_id",
                    "project_id",
                    "role_id",
                    "project",
                    "role",
                    "linked",
                    "archived",
                    "created_at",
                ],
            )
        if batch.renamed_orgs:
            await connection.execute(
                f"UPDATE {self.schema}.groups g SET project = p.name, role = r.name "
                f"FROM {self.schema}.catalog p, {self.schema}.catalog r WHERE g.org_id = ANY($1::uuid[]) "
                "AND p.org_id = g.org_id AND p.entity_id = g.project_id AND r.org_id = g.org_id "
                "AND r.entity_id = g.role_id",
                list(batch.renamed_orgs),
            )
        for org_id, column, entity_id in batch.archived:
            await connection.execute(
                f"UPDATE {self.schema}.groups SET archived = true WHERE org_id = $1 AND {column} = $2",
                org_id,
                entity_id,
            )
        if batch.linked:
            await connection.executemany(
                f"UPDATE {self.schema}.groups SET linked = $3 WHERE org_id = $1 AND group_id = $2",
                [(key[0], key[1], linked) for key, linked in batch.linked.items()],
            )
        if batch.new_users:
            await connection.copy_records_to_table(
                "users",
                schema_name=self.schema,
                columns=["org_id", "user_id", *_USER_COLUMNS],
                records=[
                    (key[0], key[1], *(row[column] for column in _USER_COLUMNS))
                    for key, row in batch.new_users.items()
                ],
            )
        await self._update_users(connection, batch.user_changes)
        if batch.erased:
            await connection.execute(
                f"DELETE FROM {self.schema}.users u USING unnest($1::uuid[], $2::uuid[]) AS k(org_id, user_id) "
                "WHERE u.org_id = k.org_id AND u.user_id = k.user_id",
                *columns_of(list(batch.erased), 2),
            )
        if batch.closes:
            await connection.execute(
                f"UPDATE {self.schema}.membership_intervals AS i SET valid_to = c.valid_to, revoked_by = c.revoked_by, "
                "revoke_cause = c.revoke_cause FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], "
                "$5::text[], $6::text[]) AS c(org_id, user_id, group_id, valid_to, revoked_by, revoke_cause) "
                "WHERE i.org_id = c.org_id AND i.user_id = c.user_id AND i.group_id = c.group_id AND i.valid_to IS NULL",
                *columns_of(batch.closes, 6),
            )
        intervals = [*batch.completed, *batch.opened.values()]
        if intervals:
            await connection.copy_records_to_table(
                "membership_intervals", schema_name=self.schema, columns=_INTERVAL_COLUMNS, records=intervals
            )
        gone = [pair for pair, state in batch.memberships.items() if state is None]
        held = [(*pair, *state) for pair, state in batch.memberships.items() if state is not None]
        if gone:
            await connection.execute(
                f"DELETE FROM {self.schema}.memberships m USING unnest($1::uuid[], $2::uuid[], $3::uuid[]) "
                "AS k(org_id, user_id, group_id) WHERE m.org_id = k.org_id AND m.user_id = k.user_id "
                "AND m.group_id = k.group_id",
                [pair[0] for pair in gone],
                [pair[1] for pair in gone],
                [pair[2] for pair in gone],
            )
        if held:
            # One row per pair (batch.memberships is keyed by pair), as ON CONFLICT DO UPDATE requires.
            await connection.execute(
                f"INSERT INTO {self.schema}.memberships (org_id, user_id, group_id, since, granted_by, cause) "
                "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[]) "
                "ON CONFLICT (org_id, group_id, user_id) DO UPDATE SET "
                "since = EXCLUDED.since, granted_by = EXCLUDED.granted_by, cause = EXCLUDED.cause",
                *columns_of(held, 6),
            )

    async def _update_users(self, connection: Connection, changes: dict[Key, dict[str, Any]]) -> None:
        if not changes:
            return
        keys = list(changes)
        rows = await connection.fetch(
            f"SELECT u.org_id, u.user_id, {', '.join(_USER_COLUMNS)} FROM {self.schema}.users u "
            "JOIN unnest($1::uuid[], $2::uuid[]) AS k(org_id, user_id) USING (org_id, user_id)",
            [key[0] for key in keys],
            [key[1] for key in keys],
        )
        merged = []
        for row in rows:
            current = dict(zip(_USER_COLUMNS, row[2:], strict=True))
            current.update(changes[(row[0], row[1])])
            merged.append((row[0], row[1], *(current[column] for column in _USER_COLUMNS)))
        assignments = ", ".join(f"{column} = v.{column}" for column in _USER_COLUMNS)
        await connection.execute(
            f"UPDATE {self.schema}.users AS u SET {assignments} FROM unnest($1::uuid[], $2::uuid[], $3::text[], "
            "$4::text[], $5::text[], $6::text[], $7::boolean[], $8::boolean[], $9::boolean[], $10::timestamptz[], "
            f"$11::timestamptz[], $12::text[], $13::text[]) AS v(org_id, user_id, {', '.join(_USER_COLUMNS)}) "
            "WHERE u.org_id = v.org_id AND u.user_id = v.user_id",
            *columns_of(merged, 2 + len(_USER_COLUMNS)),
        )

    async def reset(self, connection: Connection) -> None:
        for table in self.tables:
            await connection.execute(f"DELETE FROM {self.schema}.{table}")
