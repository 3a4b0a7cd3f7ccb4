"""The SCIM users projection: one row per live user, written inline with the events that change it.

A row is a function of the User aggregate's state after its events, whether those events were just
decided (the write path) or replayed from the log (a rebuild), so both paths produce identical rows.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.utils import get_topic

from domain.errors import UserNameTaken
from domain.users import EVENT_TYPES, User
from eventstore.inline_projection import FollowUp
from eventstore.personal_data import cipher_of
from eventstore.pool import Connection
from eventstore.records import RecordedEvent, decode_event
from eventstore.store import ASSIGNED_TX
from projections.scim_paging import PagedQuery, PageEnds
from projections.scim_sql import Column, QueryCompiler, Relation
from scim.core_schemas import USER
from scim.folding import fold
from scim.query import ListQuery
from scim.resource_type import ResourceType

USER_COLUMNS = {
    "id": Column("user_id::text", case_exact=True, unique=True),
    "userName": Column("user_name", unique=True),
    "externalId": Column("external_id", case_exact=True),
    # The column is false while `active` is unassigned (which counts as not active), but `active pr` is not.
    "active": Column("active", "boolean", present="(scim_users.resource ? 'active')"),
    "meta.created": Column("created", "dateTime"),
    "meta.lastModified": Column("last_modified", "dateTime"),
    "meta.resourceType": Column("'User'::text", case_exact=True),
}
USER_RELATIONS = {
    "groups": Relation(
        source="group_members AS membership JOIN scim_groups AS grp "
        "ON grp.org_id = membership.org_id AND grp.group_id = membership.group_id",
        correlation="membership.org_id = scim_users.org_id AND membership.user_id = scim_users.user_id",
        columns={
            "value": Column("grp.group_id::text", case_exact=True),
            "display": Column("grp.display_name"),
            "type": Column("'direct'::text", case_exact=True),
        },
    )
}
USER_QUERIES = QueryCompiler(USER, USER_COLUMNS, relations=USER_RELATIONS)
USER_EVENT_TYPES = [get_topic(event_type) for event_type in EVENT_TYPES]
_MEMBERSHIP_ONLY = frozenset({get_topic(User.JoinedGroup), get_topic(User.LeftGroup)})

# The readOnly `groups` attribute, read in the same round trip as the user.
_GROUPS = (
    "(SELECT coalesce(jsonb_agg(jsonb_build_object('value', grp.group_id, 'display', grp.display_name) "
    "ORDER BY grp.display_name), '[]'::jsonb) "
    "FROM group_members AS membership JOIN scim_groups AS grp "
    "ON grp.org_id = membership.org_id AND grp.group_id = membership.group_id "
    "WHERE membership.org_id = scim_users.org_id AND membership.user_id = scim_users.user_id)"
)
_FIELDS = f"user_id, resource, version, created, last_modified, {_GROUPS} AS groups"
USER_PAGES = PagedQuery("scim_users", _FIELDS, USER_QUERIES, id_column="user_id")


class UserRow(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    resource: dict[str, Any]
    version: int
    created: datetime.datetime
    last_modified: datetime.datetime
    groups: list[dict[str, Any]]


class Page(msgspec.Struct, frozen=True):
    total: int
    rows: list[UserRow]


def scim_resource(user: User) -> dict[str, Any]:
    """The user's SCIM attributes: the profile and `active`, unless a client unassigned it (then the user is
    inactive, and the resource shows no `active` until a client sets it again)."""
    if user.active_unassigned:
        return dict(user.attributes)
    return {**user.attributes, "active": user.active}


def row_of(user: User, groups: list[dict[str, Any]] | None = None) -> UserRow:
    """What GET returns for `user`: the response to a write is built from the aggregate, not re-read. Only the
    groups' current names come from the projection (see `groups_of`)."""
    return UserRow(
        user.id, scim_resource(user), user.version, user.created_on, user.modified_on, groups or []
    )


# The columns of a scim_users row, in the order `_row_values` gives them.
_ROW_COLUMNS = (
    "org_id, user_id, user_name, external_id, active, resource, version, created, last_modified, sort_key"
)


def _row_values(user: User, sort_key: int, org_id: uuid.UUID | None = None) -> tuple[Any, ...]:
    """The scim_users row of `user`; a rebuild passes the org id it already holds as a UUID."""
    attributes = user.attributes
    return (
        uuid.UUID(user.org_id) if org_id is None else org_id,
        user.id,
        attributes["userName"],
        attributes.get("externalId"),
        user.active,  # false while `active` is unassigned, which counts as not active
        scim_resource(user),
        user.version,
        user.created_on,
        user.modified_on,
        sort_key,
    )


def follow_up(user: User, org_id: uuid.UUID, first_version: int, types: Iterable[str]) -> FollowUp:
    """The write that brings the user's row up to date with `user`, once events from `first_version` on, of
    `types`, are appended; it rides in the append's statement (see FollowUp) and changes nothing if the
    append lost a race. `org_id` is the user's, parsed once by the caller. A collision is a taken userName."""
    refusal = functools.partial(_user_name_taken, (user,))
    if all(event_type in _MEMBERSHIP_ONLY for event_type in types):
        # Group membership is projected by scim_groups; here only the version moves.
        return FollowUp(
            "UPDATE scim_users SET version = $3, last_modified = $4 "
            "WHERE org_id = $1 AND user_id = $2 AND EXISTS (SELECT FROM appended)",
            (org_id, user.id, user.version, user.modified_on),
            refusal,
        )
    if user.deleted:
        return FollowUp(
            "DELETE FROM scim_users WHERE org_id = $1 AND user_id = $2 AND EXISTS (SELECT FROM appended)",
            (org_id, user.id),
            refusal,
        )
    values = _row_values(user, 0, org_id)[:-1]
    if first_version == 1:
        # The provisioning event's log position is the row's paging order, as a rebuild derives it.
        return FollowUp(
            f"INSERT INTO scim_users ({_ROW_COLUMNS}) "
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, position FROM appended WHERE version = 1",
            values,
            refusal,
        )
    *columns, _created, last_modified = values
    return FollowUp(
        "UPDATE scim_users SET user_name = $3, external_id = $4, active = $5, resource = $6, version = $7, "
        "last_modified = $8 WHERE org_id = $1 AND user_id = $2 AND EXISTS (SELECT FROM appended)",
        (*columns, last_modified),
        refusal,
    )


_ROW_TYPES = (
    "uuid[], uuid[], text[], text[], boolean[], jsonb[], int[], timestamptz[], timestamptz[], bigint[]"
)
_UNNEST_ROWS = f"unnest({', '.join(f'${n}::{kind}' for n, kind in enumerate(_ROW_TYPES.split(', '), 1))})"
_INSERT_ROWS = f"INSERT INTO scim_users ({_ROW_COLUMNS}) SELECT * FROM {_UNNEST_ROWS}"
_UPDATE_ROWS = (
    "UPDATE scim_users SET user_name = r.user_name, external_id = r.external_id, active = r.active, "
    "resource = r.resource, version = r.version, last_modified = r.last_modified "
    f"FROM {_UNNEST_ROWS} AS r({_ROW_COLUMNS}) "
    "WHERE scim_users.org_id = r.org_id AND scim_users.user_id = r.user_id"
)
# Memberships are projected by scim_groups: a user whose only new events are membership changes keeps
# their row, and only its version moves (rewriting thousands of resources was most of a large group push).
_TOUCH_ROWS = (
    "UPDATE scim_users SET version = r.version, last_modified = r.last_modified "
    "FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[]) AS r(org_id, user_id, version, last_modified) "
    "WHERE scim_users.org_id = r.org_id AND scim_users.user_id = r.user_id"
)
_DELETE_ROWS = (
    "DELETE FROM scim_users USING unnest($1::uuid[], $2::uuid[]) AS r(org_id, user_id) "
    "WHERE scim_users.org_id = r.org_id AND scim_users.user_id = r.user_id"
)


async def write(connection: Connection, changed: Sequence[tuple[User, Sequence[RecordedEvent]]]) -> None:
    """Bring the rows of every user in `changed` up to date, inside the transaction that appended their
    events: at most one statement each for the new, the changed and the deleted, whatever their number (a
    reactor's batch changes thousands)."""
    created, updated, deleted, touched = [], [], [], []
    for user, recorded in changed:
        if user.deleted:
            deleted.append(user)
        elif recorded[0].version != 1 and all(event.type in _MEMBERSHIP_ONLY for event in recorded):
            touched.append((uuid.UUID(user.org_id), user.id, user.version, user.modified_on))
        elif recorded[0].version == 1:
            # The provisioning event's log position is the row's paging order, as a rebuild derives it.
            created.append(_row_values(user, recorded[0].position))
        else:
            updated.append(_row_values(user, 0))
    for statement, rows in ((_INSERT_ROWS, created), (_UPDATE_ROWS, updated)):
        if rows:
            with user_name_collision(*(user for user, _ in changed)):
                await connection.execute(statement, *(list(column) for column in zip(*rows, strict=True)))
    if touched:
        await connection.execute(_TOUCH_ROWS, *(list(column) for column in zip(*touched, strict=True)))
    if deleted:
        await connection.execute(
            _DELETE_ROWS, [uuid.UUID(user.org_id) for user in deleted], [user.id for user in deleted]
        )


@contextmanager
def user_name_collision(*users: User) -> Iterator[None]:
    """Around a write of users' rows: a collision is a taken userName."""
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        raise _user_name_taken(users, error) from error


def _user_name_taken(users: Sequence[User], error: asyncpg.UniqueViolationError) -> UserNameTaken:
    # Only the userName index can collide here: the primary key is the stream id, fresh per user.
    detail = getattr(error, "detail", "") or ""
    # The detail names the index's key, the folded userName.
    taken = next((user for user in users if fold(user.user_name) in detail), users[0])
    return UserNameTaken(taken.user_name)


async def get(connection: Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> UserRow | None:
    row = await connection.fetchrow(
        f"SELECT {_FIELDS} FROM scim_users WHERE org_id = $1 AND user_id = $2", org_id, user_id
    )
    return UserRow(*row) if row is not None else None


async def groups_of(connection: Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = await connection.fetchval(
        f"SELECT {_GROUPS} FROM scim_users WHERE org_id = $1 AND user_id = $2", org_id, user_id
    )
    return groups or []


async def query(
    connection: Connection,
    org_id: uuid.UUID,
    listing: ListQuery,
    page_ends: PageEnds | None = None,
    resource_type: ResourceType = USER,
) -> Page:
    """One page in a stable order: `sortBy` first if given, then provisioning order. `resource_type` is the
    organization's User type: its own extensions' attributes are filtered and sorted on in the jsonb document,
    under their URN, as the enterprise extension's are."""
    pages = USER_PAGES
    if resource_type is not USER:
        pages = dataclasses.replace(
            USER_PAGES, compiler=dataclasses.replace(USER_QUERIES, resource_type=resource_type)
        )
    total, rows = await pages.fetch(connection, org_id, listing, page_ends)
    return Page(total, [UserRow(*row) for row in rows])


REBUILD_CHUNK = 5000
# Only the columns a fold needs: decoding the others cost a tenth of a rebuild. In stream order, so that each
# user's row is complete as soon as the next stream begins.
# Each stream's first row carries the user's data key, if it still has one (eventstore/personal_data.py).
REBUILD_EVENTS = (
    "SELECT type, schema_version, payload, stream_id, version, occurred_at, position, org_id, "
    "CASE WHEN version = 1 THEN (SELECT wrapped_key FROM personal_data_keys AS k "
    "WHERE k.org_id = events.org_id AND k.user_id = events.stream_id) END FROM events "
    f"WHERE type = ANY($1::text[]) AND {ASSIGNED_TX} ORDER BY org_id, stream_id, version"
)


async def rebuild_rows(connection: Connection, reader: Connection) -> int:
    """Replace every row with rows folded from the log alone; returns the number of events replayed. Runs in
    the caller's transaction, which holds the table locks (see ScimProjection.rebuild).

    `reader`, a second connection outside any transaction, reads the log through the caller's snapshot while
    the caller copies each user's row in as soon as it is complete: the database reads and writes while
    this process folds, and only one user is held at a time, however many the log has.
    """
    snapshot = await connection.fetchval("SELECT pg_export_snapshot()")
    replay = _Replay()
    async with reader.transaction(isolation="repeatable_read", readonly=True):
        await reader.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        # TRUNCATE rather than DELETE: copying into a table full of dead rows made every unique-index check
        # visit them, and took twice as long. Its lock makes readers wait for the rebuild too, as writers
        # already do. The indexes stay: the database maintains them while this process folds the next users.
        await connection.execute("TRUNCATE scim_users")
        await connection.copy_records_to_table(
            "scim_users", records=replay.rows(reader), columns=_ROW_COLUMNS.split(", ")
        )
    return replay.replayed


class _Replay:
    def __init__(self) -> None:
        self.replayed = 0

    async def rows(self, reader: Connection) -> AsyncIterator[tuple[Any, ...]]:
        """The row of every user the log leaves undeleted, folded stream by stream."""
        cursor = await reader.cursor(REBUILD_EVENTS, USER_EVENT_TYPES)
        cipher = cipher_of(reader)
        user: User | None = None
        key: AESGCM | None = None
        sort_key, org_id = 0, None
        # Fetched a chunk at a time: iterating the cursor row by row cost as much again as decoding the rows.
        while rows := await cursor.fetch(REBUILD_CHUNK):
            for row in rows:
                if user is not None and row[3] != user.id:
                    if not user.deleted:
                        yield _row_values(user, sort_key, org_id)
                    user = None
                if user is None:
                    sort_key, org_id = row[6], row[7]
                    key = cipher.unwrap(row[8]) if cipher is not None and row[8] is not None else None
                payload = row[2]
                if cipher is not None and cipher.holds_personal_data(row[0]):
                    payload = cipher.open_payload(payload, row[7], row[3], key)
                user = decode_event(row[0], row[1], payload, *row[3:6]).mutate(user)
                assert isinstance(user, User)
            self.replayed += len(rows)
        if user is not None and not user.deleted:
            yield _row_values(user, sort_key, org_id)
