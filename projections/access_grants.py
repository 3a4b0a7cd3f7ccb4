"""access_grants: who held which Project × Role from when to when, the table the host app's access check reads.

A grant opens at a `User.JoinedGroup` and closes at the next `User.LeftGroup` of the same user and group:
the intervals `audit access` replays from the log (projections/audit.py), by the same rule, so that the check
and the audit always agree. Deactivation, leaving the organization, unlink and archive take access away only
through the removals they record (the reactors', the unlink's, the archive's), and so does this table. A
rename changes no grant: the pair is held by ids.

Written inline by the SCIM projection, in the transaction that appends the events and in the statement that
writes their memberships (`fold`, then `riding`), and rebuilt from the log alone by the same fold (`rebuild`).
Migration 0019 backfilled the log of its day in SQL; 0023 added the revocation's log position (which the access
timeline links a bar's end to) and backfilled it the same way.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from domain.catalog import Group
from domain.users import MEMBERSHIP_EVENT_TYPE_NAMES, User
from eventstore.pool import Connection
from eventstore.records import RecordedEvent
from projections.arrays import columns_of

_Membership = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # org, user, group

# Rows written by one statement during a rebuild (the inline path writes a request's few at once).
REBUILD_CHUNK = 10_000


@dataclass(slots=True)
class Grant:
    """One interval, as the fold opened it and possibly closed it."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    group_id: uuid.UUID
    granted_at: datetime.datetime
    granted_position: int
    granted_by: str
    granted_request_id: str | None
    grant_cause: str
    revoked_at: datetime.datetime | None = None
    revoked_by: str | None = None
    revoked_request_id: str | None = None
    revoke_cause: str | None = None
    revoked_position: int | None = None

    def row(self) -> tuple[object, ...]:
        return (
            self.org_id,
            self.user_id,
            self.group_id,
            self.granted_at,
            self.granted_position,
            self.granted_by,
            self.granted_request_id,
            self.grant_cause,
            self.revoked_at,
            self.revoked_by,
            self.revoked_request_id,
            self.revoke_cause,
            self.revoked_position,
        )


@dataclass(frozen=True, slots=True)
class Revocation:
    """The close of a grant opened before the events folded: its row is already in the table."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    group_id: uuid.UUID
    revoked_at: datetime.datetime
    revoked_by: str
    revoked_request_id: str | None
    revoke_cause: str | None
    revoked_position: int


@dataclass(slots=True)
class Folded:
    revocations: list[Revocation]
    grants: list[Grant]


def fold(recorded: Iterable[RecordedEvent]) -> Folded:
    """The grants opened by `recorded` (in log order), each closed if a later one of them revokes it, and the
    revocations of grants opened before them. As `audit access` does: a removal with no open grant closes
    nothing, and a second grant of a membership already open replaces the first (the domain records neither).
    """
    opened: dict[_Membership, Grant] = {}
    closed: list[Grant] = []
    revocations: list[Revocation] = []
    touched: set[_Membership] = set()
    for event in recorded:
        if event.type not in MEMBERSHIP_EVENT_TYPE_NAMES:
            continue
        key = (event.org_id, event.stream_id, uuid.UUID(event.payload["group_id"]))
        cause = event.payload.get("cause")
        if event.type == User.JoinedGroup.TOPIC:
            opened[key] = Grant(
                *key, event.recorded_at, event.position, event.actor, event.request_id, cause or ""
            )
        elif (grant := opened.pop(key, None)) is not None:
            grant.revoked_at, grant.revoked_by = event.recorded_at, event.actor
            grant.revoked_request_id, grant.revoke_cause = event.request_id, cause
            grant.revoked_position = event.position
            closed.append(grant)
        elif key not in touched:
            # Only the first change of a membership among these events can close a grant opened before them.
            revocations.append(
                Revocation(*key, event.recorded_at, event.actor, event.request_id, cause, event.position)
            )
        touched.add(key)
    return Folded(revocations, [*closed, *opened.values()])


# Grants are inserted with the pair of their group, read from the group's creation event (its stream's first,
# found by the log's primary key): a group's pair never changes, and the event is there even for a group
# whose project or role was archived since, which the catalog tables no longer show as live. A grant to a
# group the log does not hold (only raw events appended by hand could record one) is left out.
_GRANT_COLUMNS = (
    "org_id, user_id, project_id, role_id, granted_at, granted_position, group_id, granted_by, "
    "granted_request_id, grant_cause, revoked_at, revoked_by, revoked_request_id, revoke_cause, revoked_position"
)
_INSERT_GRANTS = f"""
INSERT INTO access_grants ({_GRANT_COLUMNS})
SELECT new.org_id, new.user_id, (created.payload->>'project_id')::uuid, (created.payload->>'role_id')::uuid,
       new.granted_at, new.granted_position, new.group_id, new.granted_by, new.granted_request_id,
       new.grant_cause, new.revoked_at, new.revoked_by, new.revoked_request_id, new.revoke_cause,
       new.revoked_position
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::bigint[])
     AS new(org_id, user_id, group_id, granted_at, granted_position, granted_by, granted_request_id,
            grant_cause, revoked_at, revoked_by, revoked_request_id, revoke_cause, revoked_position)
-- Whose creation's tx is assigned as eventstore.store.ASSIGNED_TX requires: a forged group grants nothing.
JOIN events AS created
  ON created.org_id = new.org_id AND created.stream_id = new.group_id AND created.version = 1
 AND created.type = '{Group.Created.TOPIC}'
 AND (created.tx < (SELECT pg_snapshot_xmax(pg_current_snapshot()))
      OR created.tx = (SELECT pg_current_xact_id_if_assigned()))
"""
# Closes the open grant of each membership (found by the partial unique index on open grants).
_REVOKE = """
UPDATE access_grants AS held
SET revoked_at = gone.revoked_at, revoked_by = gone.revoked_by, revoked_request_id = gone.revoked_request_id,
    revoke_cause = gone.revoke_cause, revoked_position = gone.revoked_position
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
            $8::bigint[])
     AS gone(org_id, user_id, group_id, revoked_at, revoked_by, revoked_request_id, revoke_cause,
             revoked_position)
WHERE held.org_id = gone.org_id AND held.user_id = gone.user_id AND held.group_id = gone.group_id
  AND held.revoked_at IS NULL
"""
_REVOKE_PARAMETERS = 8
_GRANT_PARAMETERS = 13


def shifted(sql: str, offset: int) -> str:
    """`sql` with its parameters $n numbered $(n + offset), to follow another statement's."""
    return re.sub(r"\$(\d+)", lambda number: f"${int(number[1]) + offset}", sql)


_GRANT_AFTER_REVOKE = shifted(_INSERT_GRANTS, _REVOKE_PARAMETERS)


def _revocation_row(revocation: Revocation) -> tuple[object, ...]:
    return (
        revocation.org_id,
        revocation.user_id,
        revocation.group_id,
        revocation.revoked_at,
        revocation.revoked_by,
        revocation.revoked_request_id,
        revocation.revoke_cause,
        revocation.revoked_position,
    )


def riding(folded: Folded) -> tuple[str, list[Any]] | None:
    """The write of `folded` as common table expressions (parameters numbered from $1) and their parameters,
    for the SCIM projection to send in the statement that writes the same changes to group_members: a
    membership change then costs no round trip more for its grants. None when there is nothing to write, or
    when it must be written on its own (`write`)."""
    if not folded.grants and not folded.revocations:
        return None
    revocations = columns_of(
        [_revocation_row(revocation) for revocation in folded.revocations], _REVOKE_PARAMETERS
    )
    grants = columns_of([grant.row() for grant in folded.grants], _GRANT_PARAMETERS)
    if not folded.grants:
        return f"access_revoked AS ({_REVOKE})", revocations
    if not folded.revocations:
        return f"access_granted AS ({_INSERT_GRANTS})", grants
    if _regranted(folded):
        return None
    return f"access_revoked AS ({_REVOKE}), access_granted AS ({_GRANT_AFTER_REVOKE})", [
        *revocations,
        *grants,
    ]


def _regranted(folded: Folded) -> bool:
    """Whether the same events close a membership's earlier grant and open a new one (no writer records that
    today). The parts of one statement run in no defined order, and the new open grant must not meet the old
    one in the index of open grants: the revocations must then go first, in a statement of their own."""
    closed = {
        (revocation.org_id, revocation.user_id, revocation.group_id) for revocation in folded.revocations
    }
    return any((grant.org_id, grant.user_id, grant.group_id) in closed for grant in folded.grants)


async def write(connection: Connection, folded: Folded) -> None:
    """Write `folded` on its own: the revocations, then the grants."""
    if folded.revocations:
        rows = [_revocation_row(revocation) for revocation in folded.revocations]
        await connection.execute(_REVOKE, *columns_of(rows, _REVOKE_PARAMETERS))
    if folded.grants:
        await connection.execute(
            _INSERT_GRANTS, *columns_of([grant.row() for grant in folded.grants], _GRANT_PARAMETERS)
        )


async def rebuild(connection: Connection, recorded: Sequence[RecordedEvent]) -> None:
    """Empty the table, then write the grants of `recorded` (the whole log's membership events, in log order),
    folded as the inline path folds them. The caller holds the table in EXCLUSIVE mode."""
    await connection.execute("DELETE FROM access_grants")
    # Starting from nothing, a revocation of an earlier grant has no grant to close: the fold saw them all.
    grants = fold(recorded).grants
    for start in range(0, len(grants), REBUILD_CHUNK):
        chunk = grants[start : start + REBUILD_CHUNK]
        await connection.execute(
            _INSERT_GRANTS, *columns_of([grant.row() for grant in chunk], _GRANT_PARAMETERS)
        )
