"""The access timeline: for a group or a user over a window, who held which Project × Role when, as bars.

Read from access_grants (projections/access_grants.py), which holds exactly the intervals `audit access`
replays from the log (projections/audit.py `access`), by index, in one statement: a group's grants by the
index of migration 0023 (org, group, granted_at), a user's by the primary key (org, user, ...). Nothing is
replayed: a page of a group of 10,000 members over a year costs what its 10,000 rows cost, whatever the size
of the log (about 0.2 s on a quiet 2-core machine with a log of 1,000,000 events: bench/console_timeline.py).

The window [start, end] keeps the grants the audit's window keeps: granted at or before `end`, and not
revoked before `start` (an instant of grant or revocation on a bound counts, as the audit's does). Each bar
keeps the interval as recorded (`granted_at`, `revoked_at`; revoked_at is None while the grant holds) and
carries it clipped to the window (`shown_from`, `shown_to`; a grant still held, or revoked after the window,
is shown to its end). It names the events that bound it by log position (`granted_position`,
`revoked_position`), so that the console links a bar to them.

Names are today's, not the ones of the grant's time (access_grants holds ids only): `user_name` is the user's
userName now (scim_users); for a user deleted since, the last userName analytics.users holds for them;
`project` and `role` are the pair's names now, or the last they had before an archive. The audit's replay names them as
they were at the grant; ids are the same in both.

Pages: at most PAGE_SIZE bars (10,000) a page, in the order of the chart's rows (users by folded userName in
a group's view, pairs by folded project then role name in a user's view; then by grant), with an opaque
cursor to the next. A row's bars may straddle two pages: the chart of the next page then starts with that row
again. As the order is by today's names, a rename between two reads of pages may move a row across the
cursor.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from eventstore.pool import Connection
from projections.audit import window_error

PAGE_SIZE = 10_000

View = Literal["group", "user"]


@dataclass(slots=True)
class TimelineBar:
    """One grant of a Project × Role to a user: as recorded, and as shown within the window. Not frozen: a
    frozen dataclass's __init__ sets each field through object.__setattr__, 16 times slower (55 ms instead
    of 3 for a page of 10,000 bars, measured)."""

    user_id: uuid.UUID
    user_name: str
    group_id: uuid.UUID
    project_id: uuid.UUID
    project: str
    role_id: uuid.UUID
    role: str
    granted_at: datetime.datetime
    revoked_at: datetime.datetime | None
    shown_from: datetime.datetime
    shown_to: datetime.datetime
    granted_by: str
    grant_cause: str
    granted_request_id: str | None
    granted_position: int
    revoked_by: str | None
    revoke_cause: str | None
    revoked_request_id: str | None
    revoked_position: int | None

    @property
    def open(self) -> bool:
        """Still held: no revocation recorded yet."""
        return self.revoked_at is None

    @property
    def began_before(self) -> bool:
        """Granted before the window: the bar's start is the window's."""
        return self.shown_from != self.granted_at

    @property
    def continues(self) -> bool:
        """Held past the window's end (still held, or revoked after it): the bar's end is the window's."""
        return self.revoked_at is None or self.shown_to != self.revoked_at


@dataclass(frozen=True, slots=True)
class TimelinePage:
    view: View
    subject: uuid.UUID  # the group's id, or the user's
    start: datetime.datetime
    end: datetime.datetime
    bars: list[TimelineBar]
    next_cursor: str | None  # None on the last page


_BAR_COLUMNS = """
grant_row.user_id, coalesce(user_now.user_name, user_then.user_name, grant_row.user_id::text) AS user_name,
grant_row.group_id, grant_row.project_id, coalesce(project.name, grant_row.project_id::text) AS project,
grant_row.role_id, coalesce(role.name, grant_row.role_id::text) AS role,
grant_row.granted_at, grant_row.revoked_at, grant_row.granted_by, grant_row.grant_cause, grant_row.granted_request_id, grant_row.granted_position,
grant_row.revoked_by, grant_row.revoke_cause, grant_row.revoked_request_id, grant_row.revoked_position
"""
# Today's names, by primary keys. A user deleted since has no scim_users row: their name is then the last
# userName analytics.users holds for them (kept after deletion, by the analytics projection, until the person
# is erased), and only then. Not read from the log: a userName is stored there encrypted (personal data), so
# SQL can neither show nor sort it. Until the runner has applied a deletion, and once the person is erased,
# the user's id stands in.
_NAMES = """
LEFT JOIN scim_users AS user_now
  ON user_now.org_id = grant_row.org_id AND user_now.user_id = grant_row.user_id
LEFT JOIN analytics.users AS user_then
  ON user_now.user_id IS NULL AND user_then.org_id = grant_row.org_id AND user_then.user_id = grant_row.user_id
LEFT JOIN catalog_projects AS project
  ON project.org_id = grant_row.org_id AND project.project_id = grant_row.project_id
LEFT JOIN catalog_roles AS role ON role.org_id = grant_row.org_id AND role.role_id = grant_row.role_id
"""

# $1 org, $2 group or user, $3 start, $4 end, $5..$8 the cursor's key (or null), $9 the page's size + 1.
# Rows are sorted by a label in bytewise order ("C"), which the cursor's label is compared in too.
_PAGE = """
SELECT * FROM (
    SELECT named_bar.*, {label} COLLATE "C" AS row_label
    FROM (
        SELECT {columns}
        FROM access_grants AS grant_row {names}
        WHERE grant_row.org_id = $1 AND grant_row.{subject} = $2
          AND grant_row.granted_at <= $4 AND (grant_row.revoked_at IS NULL OR grant_row.revoked_at >= $3)
    ) AS named_bar
) AS bar
WHERE $5::text IS NULL
   OR (bar.row_label, bar.{row_id}, bar.granted_at, bar.granted_position)
      > ($5::text COLLATE "C", $6::uuid, $7::timestamptz, $8::bigint)
ORDER BY bar.row_label, bar.{row_id}, bar.granted_at, bar.granted_position
LIMIT $9
"""
_GROUP_PAGE = _PAGE.format(
    columns=_BAR_COLUMNS,
    names=_NAMES,
    label="scim_fold(named_bar.user_name)",
    row_id="user_id",
    subject="group_id",
)
# A unit separator between the two names: it sorts below any character a name is shown with.
_USER_PAGE = _PAGE.format(
    columns=_BAR_COLUMNS,
    names=_NAMES,
    label="scim_fold(named_bar.project) || chr(31) || scim_fold(named_bar.role)",
    row_id="group_id",
    subject="user_id",
)


def _bar(row: tuple[Any, ...], start: datetime.datetime, end: datetime.datetime) -> TimelineBar:
    """A row of the page's statement as a bar, clipped to [start, end] here rather than in SQL: decoding two
    more timestamps a row cost a third of the page's decoding (18 of 51 ms for 10,000 rows, measured)."""
    (user_id, user_name, group_id, project_id, project, role_id, role, granted_at, revoked_at) = row[:9]
    shown_from = granted_at if granted_at > start else start
    shown_to = revoked_at if revoked_at is not None and revoked_at < end else end
    granted_by, grant_cause, granted_request_id, granted_position = row[9:13]
    revoked_by, revoke_cause, revoked_request_id, revoked_position = row[13:17]
    return TimelineBar(
        user_id,
        user_name,
        group_id,
        project_id,
        project,
        role_id,
        role,
        granted_at,
        revoked_at,
        shown_from,
        shown_to,
        granted_by,
        grant_cause,
        granted_request_id,
        granted_position,
        revoked_by,
        revoke_cause,
        revoked_request_id,
        revoked_position,
    )


@dataclass(frozen=True, slots=True)
class _Key:
    label: str
    row_id: uuid.UUID
    granted_at: datetime.datetime
    granted_position: int


def encode_cursor(view: View, subject: uuid.UUID, key: _Key) -> str:
    """Opaque to the caller: the view and subject it was given for, and the last bar's place in the order."""
    text = json.dumps(
        [view, str(subject), key.label, str(key.row_id), key.granted_at.isoformat(), key.granted_position]
    )
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(text: str, view: View, subject: uuid.UUID) -> _Key:
    """The key a cursor of `encode_cursor` holds, for this view and subject. ValueError for anything else."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4)))
        kind, of, label, row_id, granted_at, position = decoded
        key = _Key(label, uuid.UUID(row_id), datetime.datetime.fromisoformat(granted_at), position)
    except (UnicodeError, binascii.Error, ValueError, TypeError) as error:
        raise ValueError("not a cursor of the access timeline") from error
    valid = (
        isinstance(label, str)
        and isinstance(position, int)
        and not isinstance(position, bool)
        and 0 <= position < 2**63
        and key.granted_at.tzinfo is not None
    )
    if not valid:
        raise ValueError("not a cursor of the access timeline")
    if (kind, of) != (view, str(subject)):
        raise ValueError("the cursor is another timeline's: start again from the first page")
    return key


async def read_timeline(
    connection: Connection,
    org_id: uuid.UUID,
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    group_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> TimelinePage:
    """A page of the bars of `group_id`'s members, or of `user_id`'s pairs (exactly one of the two), over
    [start, end] (aware datetimes), after `cursor` (a previous page's `next_cursor`), at most `limit` bars.

    Raises ValueError for a reversed window, a naive datetime, neither or both subjects, a limit outside
    1..PAGE_SIZE, or a cursor that is not this timeline's. One statement, in a read-only transaction of its own
    (a savepoint inside the caller's, which then keeps JIT off until it ends)."""
    if (group_id is None) == (user_id is None):
        raise ValueError("Give either a group or a user, not both and not neither.")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("The window's bounds need a time zone.")
    reversed_window = window_error(start, end, "start", "end")
    if reversed_window is not None:
        raise ValueError(reversed_window)
    if not 1 <= limit <= PAGE_SIZE:
        raise ValueError(f"A page holds 1 to {PAGE_SIZE} bars, not {limit}.")
    view: View = "group" if group_id is not None else "user"
    subject = group_id if group_id is not None else user_id
    assert subject is not None
    after = decode_cursor(cursor, view, subject) if cursor is not None else None
    async with connection.transaction(readonly=True):
        # The planner prices a group of 10,000 members above jit_above_cost, and compiling the statement
        # took 830 ms of the 1,010 it then ran for (measured, bench/console_timeline.py): the read is a few
        # index probes a row, which JIT cannot speed up. Off for this statement's transaction alone.
        await connection.execute("SET LOCAL jit = off")
        rows = await connection.fetch(
            _GROUP_PAGE if view == "group" else _USER_PAGE,
            org_id,
            subject,
            start,
            end,
            after.label if after else None,
            after.row_id if after else None,
            after.granted_at if after else None,
            after.granted_position if after else None,
            limit + 1,
        )
    bars = [_bar(tuple(row), start, end) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        row_id = last["user_id"] if view == "group" else last["group_id"]
        key = _Key(last["row_label"], row_id, last["granted_at"], last["granted_position"])
        next_cursor = encode_cursor(view, subject, key)
    return TimelinePage(view, subject, start, end, bars, next_cursor)
