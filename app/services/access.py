"""The host app's access check: may this user act as this Role in this Project, now or at an instant; since
when, and granted by whom.

It is on the host app's hot path, so with ids it is one indexed read of access_grants (the latest grant of
the user and pair at or before the instant, read backwards on the table's primary key), on a pooled
connection, outside any transaction (a check of now adds two primary-key probes for the user, see below, in
the same statement). At an instant, its answer is the one `audit access` gives: the table holds the audit's
intervals (projections/access_grants.py), closed at both ends as the audit's window [T, T] is.

A project or role may be given by name and a user by userName instead: the names are resolved in the same
statement, by the unique indexes that keep them apart (live projects and roles, and users, compared ignoring
case), which costs an index probe per name and a round trip none. Names are today's: a name given up by an
archive or a rename finds nothing, and a past instant is asked about by id. An id finds what it names
without a look at whether it exists: an id that names nothing is simply not allowed. A name that names
nothing is an error (a typo should not read as "denied").

Now and at an instant differ in one thing. The audit counts membership of the group, which a deactivation, a
removal from the organization or a DELETE ends only when the runner's reactor records the removal from the
group (milliseconds at rest, unbounded while the runner is down or behind). The host app must deny at once,
so a check of now also requires the user, as the log has them now, to be provisioned (not deleted), active
and a member of the organization: read in the same statement, by scim_users' primary key and the user's
stream read backwards on the log's primary key, both only when a grant is held. A denial for that reason
says which (`reason`). A check at an instant keeps the audit's answer, which is what the past was recorded as.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import asyncpg
import msgspec
from eventsourcing.utils import get_topic

from domain.errors import NotFound
from domain.users import User


class AccessDecision(msgspec.Struct, frozen=True):
    """`since`, `granted_by` (the actor: a token, an admin, a reactor), `request_id` and `cause` are those of
    the grant that holds at the instant, or of none when not allowed. `reason` says why a check of now is
    denied although the grant is held: "user_deleted", "user_removed" (from the organization) or
    "user_inactive"; it is None otherwise."""

    allowed: bool
    user_id: uuid.UUID
    project_id: uuid.UUID
    role_id: uuid.UUID
    since: datetime.datetime | None = None
    granted_by: str | None = None
    request_id: str | None = None
    cause: str | None = None
    reason: str | None = None


_REMOVED = get_topic(User.RemovedFromOrganization)
_JOINED = get_topic(User.JoinedOrganization)
_GRANT = "granted_at, granted_by, granted_request_id, grant_cause, revoked_at"


def _user_now(held: str, user_id: str) -> str:
    """The columns user_active and user_membership: the user `user_id` (an SQL expression) as they are now,
    read only when `held` (an SQL condition: a grant is held now) so that a denial costs nothing more. Their
    scim_users row by its primary key (none once deleted; written in the deactivation's transaction), and
    their stream's latest leaving or joining of the organization, one probe of the partial index that holds
    those two event types alone (migration 0021: its type list must stay this query's for the planner to use
    it)."""
    return f"""
CASE WHEN {held} THEN (SELECT user_now.active FROM scim_users AS user_now
                       WHERE user_now.org_id = $1 AND user_now.user_id = {user_id}) END AS user_active,
CASE WHEN {held} THEN (SELECT change.type FROM events AS change
                       WHERE change.org_id = $1 AND change.stream_id = {user_id}
                         AND change.type IN ('{_REMOVED}', '{_JOINED}')
                       ORDER BY change.version DESC LIMIT 1) END AS user_membership
"""


# The latest grant: held now when it has not been revoked (and usable when the user is, see `_user_now`). The
# primary key's order read backwards.
_CURRENT = f"""
SELECT grant_row.*, {_user_now("grant_row.revoked_at IS NULL", "$2")}
FROM (SELECT {_GRANT} FROM access_grants
      WHERE org_id = $1 AND user_id = $2 AND project_id = $3 AND role_id = $4
      ORDER BY granted_at DESC, granted_position DESC LIMIT 1) AS grant_row
"""
# The latest grant at or before $5: held at $5 when not revoked before it (an instant of revocation still
# counts, as the audit's window [T, T] overlaps an interval that ends at T). Grants of a membership do not
# overlap, so no earlier grant can hold at $5 when the latest does not.
_AT = f"""
SELECT {_GRANT} FROM access_grants
WHERE org_id = $1 AND user_id = $2 AND project_id = $3 AND role_id = $4 AND granted_at <= $5
ORDER BY granted_at DESC, granted_position DESC LIMIT 1
"""
_USER_NOW_BY_NAMES = _user_now(
    "$8::timestamptz IS NULL AND held.granted_at IS NOT NULL AND held.revoked_at IS NULL", "target.user_id"
)
# The same, for references some of which are names: each resolved by its unique index (an id passes through),
# the grant read for what they resolved to; a reference that resolved to nothing comes back null.
_BY_NAMES = f"""
SELECT target.user_id, target.project_id, target.role_id, held.*, {_USER_NOW_BY_NAMES}
FROM (SELECT
        coalesce($2::uuid, (SELECT user_id FROM scim_users
                            WHERE org_id = $1 AND scim_fold(user_name) = scim_fold($3::text))) AS user_id,
        coalesce($4::uuid, (SELECT project_id FROM catalog_projects
                            WHERE org_id = $1 AND NOT archived AND scim_fold(name) = scim_fold($5::text)))
          AS project_id,
        coalesce($6::uuid, (SELECT role_id FROM catalog_roles
                            WHERE org_id = $1 AND NOT archived AND scim_fold(name) = scim_fold($7::text)))
          AS role_id) AS target
LEFT JOIN LATERAL (
    SELECT {_GRANT} FROM access_grants AS grant_row
    WHERE grant_row.org_id = $1 AND grant_row.user_id = target.user_id
      AND grant_row.project_id = target.project_id AND grant_row.role_id = target.role_id
      AND ($8::timestamptz IS NULL OR grant_row.granted_at <= $8)
    ORDER BY grant_row.granted_at DESC, grant_row.granted_position DESC LIMIT 1
) AS held ON true
"""


def _as_id(reference: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(reference, uuid.UUID):
        return reference
    try:
        return uuid.UUID(reference)
    except ValueError:
        return None


class AccessService:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    async def check(
        self,
        org_id: uuid.UUID,
        user: str | uuid.UUID,
        project: str | uuid.UUID,
        role: str | uuid.UUID,
        at: datetime.datetime | None = None,
    ) -> AccessDecision:
        """Whether `user` (an id or a userName) may act as `role` in `project` (each an id or a name) at `at`,
        or now. Raises NotFound for a name that names nothing; see the module's notes on what an id costs."""
        user_id, project_id, role_id = _as_id(user), _as_id(project), _as_id(role)
        if user_id is None or project_id is None or role_id is None:
            return await self._check_by_names(org_id, user, project, role, at)
        if at is None:
            row = await self._pool.fetchrow(_CURRENT, org_id, user_id, project_id, role_id)
            return _decision(row, user_id, project_id, role_id, at, _user_denial(row))
        row = await self._pool.fetchrow(_AT, org_id, user_id, project_id, role_id, at)
        return _decision(row, user_id, project_id, role_id, at)

    async def _check_by_names(
        self,
        org_id: uuid.UUID,
        user: str | uuid.UUID,
        project: str | uuid.UUID,
        role: str | uuid.UUID,
        at: datetime.datetime | None,
    ) -> AccessDecision:
        references = [(_as_id(reference), str(reference)) for reference in (user, project, role)]
        row = await self._pool.fetchrow(
            _BY_NAMES, org_id, *(part for pair in references for part in pair), at
        )
        assert row is not None  # one row, whatever the references
        for (kind, sent), resolved in zip(
            (("user", user), ("project", project), ("role", role)), row[:3], strict=True
        ):
            if resolved is None:
                what = "user with userName" if kind == "user" else f"live {kind} named"
                raise NotFound(f"No {what} '{sent}' in this organization.")
        grant = tuple(row)[3:8] if row["granted_at"] is not None else None
        denial = _user_denial(row) if at is None else None
        return _decision(grant, row["user_id"], row["project_id"], row["role_id"], at, denial)


def _decision(
    grant: asyncpg.Record | tuple[Any, ...] | None,
    user_id: uuid.UUID,
    project_id: uuid.UUID,
    role_id: uuid.UUID,
    at: datetime.datetime | None,
    denial: str | None = None,
) -> AccessDecision:
    """`denial`: why the user, as they are now, may not use a grant held now (see `_user_denial`)."""
    if grant is None:
        return AccessDecision(False, user_id, project_id, role_id)
    granted_at, granted_by, request_id, cause, revoked_at = tuple(grant)[:5]
    held = revoked_at is None if at is None else (revoked_at is None or revoked_at >= at)
    if not held:
        return AccessDecision(False, user_id, project_id, role_id)
    if denial is not None:
        return AccessDecision(False, user_id, project_id, role_id, reason=denial)
    return AccessDecision(True, user_id, project_id, role_id, granted_at, granted_by, request_id, cause)


def _user_denial(row: asyncpg.Record | None) -> str | None:
    """Why the user of a grant held now may not use it: deleted (no scim_users row), removed from the
    organization, or inactive; None when they may, or when no grant is held (the columns are then null
    and unused)."""
    if row is None or row["granted_at"] is None or row["revoked_at"] is not None:
        return None
    if row["user_active"] is None:
        return "user_deleted"
    if row["user_membership"] == _REMOVED:
        return "user_removed"
    if not row["user_active"]:
        return "user_inactive"
    return None
