"""An org's users as its admin asks about them: who they are, whether they are active and members, who removed
them and when, and which Project × Role they hold.

The profile and the groups come from the SCIM projection; membership of the organization from the user's own
stream (its latest `UserRemovedFromOrganization` or `UserJoinedOrganization`), read through the log's primary
key, so that the answer is the aggregate's own and needs no column of its own in the projection.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from eventsourcing.utils import get_topic

from domain.users import User
from eventstore.pool import Connection

_REMOVED = get_topic(User.RemovedFromOrganization)
_JOINED = get_topic(User.JoinedOrganization)

# The user's latest change of membership, newest first along the primary key (org_id, stream_id, version).
_MEMBERSHIP = f"""
LEFT JOIN LATERAL (
    SELECT change.type, change.payload->>'cause' AS cause, change.recorded_at, change.actor
    FROM events AS change
    WHERE change.org_id = users.org_id AND change.stream_id = users.user_id
      AND change.type IN ('{_REMOVED}', '{_JOINED}')
    ORDER BY change.version DESC
    LIMIT 1
) AS membership ON true
"""
_FIELDS = f"""
users.user_id, users.user_name, users.resource->>'displayName' AS display_name, users.active,
membership.type IS DISTINCT FROM '{_REMOVED}' AS member,
CASE WHEN membership.type = '{_REMOVED}' THEN membership.cause END AS removed_cause,
CASE WHEN membership.type = '{_REMOVED}' THEN membership.recorded_at END AS removed_at,
CASE WHEN membership.type = '{_REMOVED}' THEN membership.actor END AS removed_by,
(SELECT count(*) FROM group_members AS grant_
 WHERE grant_.org_id = users.org_id AND grant_.user_id = users.user_id) AS groups
"""
# Pages in the users' provisioning order (the index scim_users_order), each after the last one's sort key, so
# that a page costs the same however deep into the org it is.
_PAGE = f"""
SELECT {_FIELDS}, users.sort_key FROM scim_users AS users {_MEMBERSHIP}
WHERE users.org_id = $1 AND users.sort_key > $2
  AND ($3::boolean IS NULL OR users.active = $3)
  AND ($4::boolean IS NULL OR (membership.type IS NOT DISTINCT FROM '{_REMOVED}') = $4)
  AND ($6::text IS NULL OR starts_with(scim_fold(users.user_name), scim_fold($6)))
  AND ($7::text IS NULL OR strpos(scim_fold(concat_ws(' ', users.resource->>'displayName',
       users.resource#>>'{{name,givenName}}', users.resource#>>'{{name,familyName}}',
       users.resource#>>'{{name,formatted}}')), scim_fold($7)) > 0)
ORDER BY users.sort_key
LIMIT $5
"""
_ONE = f"""
SELECT {_FIELDS}, users.resource FROM scim_users AS users {_MEMBERSHIP}
WHERE users.org_id = $1 AND users.user_id = $2
"""
_BY_ID = "SELECT user_id FROM scim_users WHERE org_id = $1 AND user_id = $2"
# The same folding as the unique index on userName (migration 0010), so the index answers.
_BY_USER_NAME = "SELECT user_id FROM scim_users WHERE org_id = $1 AND scim_fold(user_name) = scim_fold($2)"
_GROUPS = """
SELECT grp.group_id, grp.display_name, project.name AS project, role.name AS role, grant_.added
FROM group_members AS grant_
JOIN scim_groups AS grp ON grp.org_id = grant_.org_id AND grp.group_id = grant_.group_id
JOIN catalog_projects AS project ON project.org_id = grp.org_id AND project.project_id = grp.project_id
JOIN catalog_roles AS role ON role.org_id = grp.org_id AND role.role_id = grp.role_id
WHERE grant_.org_id = $1 AND grant_.user_id = $2
ORDER BY scim_fold(project.name), scim_fold(role.name)
"""

USER_COLUMNS = (
    "id",
    "userName",
    "displayName",
    "active",
    "member",
    "removed_cause",
    "removed_at",
    "removed_by",
    "groups",
)
GROUP_COLUMNS = ("group_id", "displayName", "project", "role", "since")


@dataclass(frozen=True, slots=True)
class UserFilter:
    """`active`: only active (True) or inactive (False) users; `removed`: only those removed from the
    organization (True), whoever removed them. None: either."""

    active: bool | None = None
    removed: bool | None = None
    # Only users whose userName starts with this, and whose name (displayName, given, family or formatted)
    # contains this; both ignoring case as SCIM does.
    user_name: str | None = None
    name: str | None = None


# What each status filters on: a removed user is no longer a member, whether or not still active.
STATUS_FILTERS: dict[str, UserFilter] = {
    "active": UserFilter(active=True, removed=False),
    "inactive": UserFilter(active=False, removed=False),
    "removed": UserFilter(removed=True),
}


@dataclass(frozen=True, slots=True)
class UserSummary:
    user_id: uuid.UUID
    user_name: str
    display_name: str | None
    active: bool
    member: bool
    # Why and when the user left the organization, and whose doing it was; None while a member. "admin" is an
    # org admin's removal in the app, which only a restore or an explicit activation undoes.
    removed_cause: str | None
    removed_at: datetime.datetime | None
    removed_by: str | None
    groups: int

    @property
    def removed_by_admin(self) -> bool:
        return self.removed_cause == "admin"

    @property
    def status(self) -> str:
        """As an admin tells users apart: removed (no longer a member, active or not), else active or
        inactive; the keys of STATUS_FILTERS."""
        return "removed" if not self.member else "active" if self.active else "inactive"

    def to_row(self) -> dict[str, Any]:
        return dict(zip(USER_COLUMNS, (getattr(self, field) for field in _SUMMARY_FIELDS), strict=True))


_SUMMARY_FIELDS = tuple(UserSummary.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class GroupHeld:
    group_id: uuid.UUID
    display_name: str
    project: str
    role: str
    since: datetime.datetime

    def to_row(self) -> dict[str, Any]:
        return dict(zip(GROUP_COLUMNS, (getattr(self, field) for field in _GROUP_FIELDS), strict=True))


_GROUP_FIELDS = tuple(GroupHeld.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class UserDetail:
    summary: UserSummary
    resource: dict[str, Any]  # the SCIM profile, as GET /Users/{id} has it
    groups: list[GroupHeld]


async def users(
    connection: Connection, org_id: uuid.UUID, wanted: UserFilter, page_size: int
) -> AsyncIterator[list[UserSummary]]:
    """The org's users in provisioning order, a page at a time, each page one short query: an org of any size
    is listed in a page's memory and never holds a transaction open."""
    after = -1
    while True:
        page = await users_page(connection, org_id, wanted, after, page_size)
        yield [user for user, _ in page]
        if len(page) < page_size:
            return
        after = page[-1][1]


async def users_page(
    connection: Connection, org_id: uuid.UUID, wanted: UserFilter, after: int, limit: int
) -> list[tuple[UserSummary, int]]:
    """One page of `users`: the users after the sort key `after` (-1 for the first), each with its sort key."""
    rows = await connection.fetch(
        _PAGE, org_id, after, wanted.active, wanted.removed, limit, wanted.user_name, wanted.name
    )
    return [(UserSummary(*row[:-1]), row["sort_key"]) for row in rows]


async def find_user(connection: Connection, org_id: uuid.UUID, reference: str) -> uuid.UUID | None:
    """The user `reference` names in the org: their id, else their userName ignoring case as SCIM does."""
    try:
        user_id = uuid.UUID(reference)
    except ValueError:
        pass
    else:
        found: uuid.UUID | None = await connection.fetchval(_BY_ID, org_id, user_id)
        if found is not None:
            return found
    by_name: uuid.UUID | None = await connection.fetchval(_BY_USER_NAME, org_id, reference)
    return by_name


async def user_detail(connection: Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> UserDetail | None:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        row = await connection.fetchrow(_ONE, org_id, user_id)
        if row is None:
            return None
        groups = [GroupHeld(*grant) for grant in await connection.fetch(_GROUPS, org_id, user_id)]
    return UserDetail(UserSummary(*row[:-1]), row["resource"], groups)
