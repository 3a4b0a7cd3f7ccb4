"""What the identity provider's SCIM calls got wrong, written for the connection status (migration 0024).

The HTTP edge notes each error it answers (`ScimCallErrors.note`, synchronous, never raising). A process
keeps, per organization, the latest `kept` errors and the count of all of them by hour and status, and
writes them in one statement a flush: the first error of an organization opens a window of `flush_seconds`,
at whose end its batch is written. So a flood of failing requests costs an organization one write a window,
whatever its size, and a write that fails is logged and dropped: the request was answered long before.

Operational data, not the log: the statement deletes what is past the latest `kept` rows of the organization.
Two processes writing one organization at once may leave a few rows over the bound until the next write.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
import msgspec

log = logging.getLogger("scimledger.connection")
# Members travel as JSON text: a list inside the array parameter would be read as the array's second dimension.
_members_json = msgspec.json.Encoder()

SubjectKind = Literal["user", "group"]


@dataclass(frozen=True, slots=True)
class FailedCall:
    """One SCIM request of an organization's token that was answered 4xx or 5xx, as the edge saw it.

    `subject` is the name the request itself gave (a POST's userName); when it gave none, the flush names the
    user or group of `resource_id` as the projections know it then."""

    org_id: uuid.UUID
    token_id: uuid.UUID
    recorded_at: datetime.datetime
    method: str
    route: str
    status: int
    scim_type: str | None
    detail: str
    request_id: str | None
    subject_kind: SubjectKind | None = None
    subject: str | None = None
    resource_id: uuid.UUID | None = None
    members: tuple[str, ...] = ()


@dataclass(slots=True)
class _Pending:
    """An organization's errors noted since its last write: the latest `kept`, and how many of all by
    (hour, status)."""

    calls: collections.deque[FailedCall]
    counts: collections.Counter[tuple[datetime.datetime, int]] = field(default_factory=collections.Counter)


def _hour(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# One round trip: the rows, their names (a user's or group's of the resource id, when the request gave none,
# and the token's label), the rows now past the latest $N (the statement's snapshot does not see the rows it
# inserts, so of the rows already there it keeps $N minus the batch), the hourly counts, and the counts of
# hours no status reads any more.
_WRITE = """
WITH batch AS (
    SELECT * FROM unnest($2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::int[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::uuid[], $13::text[])
        AS b(recorded_at, token_id, method, route, status, scim_type, detail, request_id, subject_kind,
             subject, resource_id, members)
), inserted AS (
    INSERT INTO scim_call_errors (org_id, recorded_at, token_id, token_label, method, route, status, scim_type,
                                  detail, request_id, subject_kind, subject, resource_id, members)
    SELECT $1, b.recorded_at, b.token_id, t.label, b.method, b.route, b.status, b.scim_type, b.detail,
           b.request_id,
           CASE WHEN b.subject IS NOT NULL THEN b.subject_kind
                WHEN u.user_name IS NOT NULL THEN 'user'
                WHEN g.display_name IS NOT NULL THEN 'group' END,
           coalesce(b.subject, u.user_name, g.display_name), b.resource_id, b.members::jsonb
    FROM batch b
    LEFT JOIN api_tokens t ON t.token_id = b.token_id AND t.org_id = $1
    LEFT JOIN scim_users u ON b.subject IS NULL AND b.subject_kind = 'user'
                          AND u.org_id = $1 AND u.user_id = b.resource_id
    LEFT JOIN scim_groups g ON b.subject IS NULL AND b.subject_kind = 'group'
                           AND g.org_id = $1 AND g.group_id = b.resource_id
    ORDER BY b.recorded_at
), trimmed AS (
    DELETE FROM scim_call_errors
    WHERE org_id = $1 AND (recorded_at, error_id) <= (
        SELECT recorded_at, error_id FROM scim_call_errors WHERE org_id = $1
        ORDER BY recorded_at DESC, error_id DESC OFFSET $14 - cardinality($2::timestamptz[]) LIMIT 1
    )
), counted AS (
    INSERT INTO scim_call_error_counts AS c (org_id, hour, status, count)
    SELECT $1, * FROM unnest($15::timestamptz[], $16::int[], $17::bigint[])
    ON CONFLICT (org_id, hour, status) DO UPDATE SET count = c.count + excluded.count
)
DELETE FROM scim_call_error_counts WHERE org_id = $1 AND hour < now() - interval '2 days'
"""


class ScimCallErrors:
    """The edge's errors, per organization, coalesced in memory and written asynchronously (see the module)."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], kept: int = 100, flush_seconds: float = 1.0
    ) -> None:
        self._pool = pool
        self.kept = kept
        self._flush_seconds = flush_seconds
        self._pending: dict[uuid.UUID, _Pending] = {}
        # The organizations whose write is scheduled, by the task sleeping until it is due.
        self._timers: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Held by a write of the organization, so that `flush` returns only once what was noted is written.
        self._writing: dict[uuid.UUID, asyncio.Lock] = {}

    def note(self, call: FailedCall) -> None:
        """Remember `call` for its organization's next write, which this schedules if none is. Never raises:
        the request it is about is being answered."""
        try:
            pending = self._pending.get(call.org_id)
            if pending is None:
                pending = self._pending[call.org_id] = _Pending(collections.deque(maxlen=self.kept))
            pending.calls.append(call)
            pending.counts[(_hour(call.recorded_at), call.status)] += 1
            if call.org_id not in self._timers:
                self._timers[call.org_id] = asyncio.get_running_loop().create_task(
                    self._write_when_due(call.org_id), name="scim-call-errors"
                )
        except Exception:
            log.exception("could not note a SCIM call's error")

    async def _write_when_due(self, org_id: uuid.UUID) -> None:
        await asyncio.sleep(self._flush_seconds)
        # Due: no longer cancelled by `flush`, and errors noted from now on schedule the next write.
        if self._timers.get(org_id) is asyncio.current_task():
            del self._timers[org_id]
        await self._write(org_id)

    async def flush(self, org_id: uuid.UUID | None = None) -> None:
        """Write now what this process has noted (of `org_id` alone, if given), and wait for a write already
        under way: the status an admin reads right after a failed attempt shows it, when this process
        answered that attempt."""
        for org in [org_id] if org_id is not None else list({*self._pending, *self._writing}):
            timer = self._timers.pop(org, None)
            if timer is not None:
                timer.cancel()
            await self._write(org)

    async def aclose(self) -> None:
        """Write everything noted; before the pool closes."""
        await self.flush()

    async def _write(self, org_id: uuid.UUID) -> None:
        lock = self._writing.setdefault(org_id, asyncio.Lock())
        try:
            async with lock:
                pending = self._pending.pop(org_id, None)
                if pending is not None:
                    await self._insert(org_id, pending)
        finally:
            if not lock.locked() and self._writing.get(org_id) is lock:
                del self._writing[org_id]

    async def _insert(self, org_id: uuid.UUID, pending: _Pending) -> None:
        calls = list(pending.calls)
        counted = list(pending.counts.items())
        try:
            await self._pool.execute(
                _WRITE,
                org_id,
                [call.recorded_at for call in calls],
                [call.token_id for call in calls],
                [call.method for call in calls],
                [call.route for call in calls],
                [call.status for call in calls],
                [call.scim_type for call in calls],
                [call.detail for call in calls],
                [call.request_id for call in calls],
                [call.subject_kind for call in calls],
                [call.subject for call in calls],
                [call.resource_id for call in calls],
                [_members_json.encode(list(call.members)).decode() for call in calls],
                self.kept,
                [hour for (hour, _), _ in counted],
                [status for (_, status), _ in counted],
                [count for _, count in counted],
            )
        except Exception as error:
            # Operational data: losing one batch costs the status a few lines, never a request its answer.
            log.warning(
                "could not write %d SCIM call error(s) of org %s: %s",
                len(calls),
                org_id,
                type(error).__name__,
                extra={"error_type": type(error).__name__},
            )
