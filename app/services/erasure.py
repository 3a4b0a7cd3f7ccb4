"""Erasing a person (GDPR Art. 17) from a log that is append-only and sealed: the CLI's `user erase`, the API's
erasure route, the console's button and the retention sweep (app/services/retention.py) all call `erase`.

One transaction does all of it, so that it happens whole or not at all:
- the User aggregate decides (`User.erase`: only a user deleted or removed from the organization, with a
  reason that repeats none of their data), and its `UserErased` event is appended; the store's inline
  projection drops the user's SCIM row and memberships from the event in the same transaction, and the
  runner's analytics projection drops analytics.users' row from it later, so a rebuild from the log alone
  gives the same tables;
- the person's data key is destroyed (eventstore/personal_data.destroy_data_key): the personal attributes of
  their events can never be read again, while the events and the seals over them stay as they were;
- the tables outside the log that may quote the person are purged: the management API's stored responses
  (idempotency_keys), the connection status's refused calls (scim_call_errors), and the runner's parked
  events' error texts (redacted, so the record of a failure stays). What each other table holds, and why it
  is left alone, is in the README's "Personal data" section.
"""

from __future__ import annotations

import datetime
import uuid

import msgspec

from app.services.scim_call_errors import ScimCallErrors
from domain.errors import NotFound
from domain.personal_data import personal_values
from domain.users import PROFILE_FIELDS, User
from eventstore.personal_data import ERASED, destroy_data_key
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import ASSIGNED_TX, ConcurrencyConflict, EventStore, Transaction

# Not the id: an id of another organization's user names nobody here, and a page says no more than that.
_NO_SUCH_USER = "No such user in this organization."
# A retry after a concurrent write to the user's stream (a reactor's) decides again on the newer state.
_ATTEMPTS = 5


class Erasure(msgspec.Struct, frozen=True):
    """What an erasure recorded: whose, when, by whom and why."""

    user_id: uuid.UUID
    erased_at: datetime.datetime
    actor: str
    reason: str


# The management API's recorded responses of this organization's tokens (and the platform's, which act on
# every organization) that quote the user's id or data. They are a retry's answer for 24 hours at most; a
# retry of a purged one runs again (and an invitation's would then be refused as a taken userName, or create
# the user anew: either is the client's to see).
_PURGE_IDEMPOTENCY = """
DELETE FROM idempotency_keys
WHERE token_id IN (SELECT token_id FROM api_tokens WHERE org_id = $1 OR org_id IS NULL)
  AND body IS NOT NULL
  AND EXISTS (SELECT FROM unnest($2::bytea[]) AS quoted(value) WHERE position(quoted.value IN body) > 0)
"""
# The identity provider's refused calls about the user: by the id in their path, or quoting their data in the
# subject, the detail sent back, or the members a group change named.
_PURGE_CALL_ERRORS = """
DELETE FROM scim_call_errors
WHERE org_id = $1
  AND (resource_id = $2 OR EXISTS (
      SELECT FROM unnest($3::text[]) AS quoted(value)
      WHERE strpos(lower(concat_ws(' ', subject, detail, members::text)), lower(quoted.value)) > 0))
"""
_PARKED_QUOTING = """
SELECT name, position, error FROM parked_events
WHERE EXISTS (SELECT FROM unnest($1::text[]) AS quoted(value) WHERE strpos(error, quoted.value) > 0)
"""


class LeftKey(msgspec.Struct, frozen=True):
    """Where a list of users who left stands: after the one who first left at `left_at`, of id `user_id`."""

    left_at: datetime.datetime
    user_id: uuid.UUID


# The users of an organization who left it (deleted, or removed) at or before a moment and were not erased
# since, in the order they first left, a page after a LeftKey (nulls: from the start); whether they are still
# out is their aggregate's to say (they may have come back). Both probes are partial indexes of migration 0028
# (a few rows per user who left, whatever the size of the log); spelled out rather than parameters, so that
# the planner can prove they apply. What the retention sweep and the console's list of who awaits erasure ask.
_LEFT_NOT_ERASED = f"""
SELECT departure.stream_id, min(departure.recorded_at) AS left_at FROM events AS departure
WHERE departure.org_id = $1 AND departure.type IN ('{User.Deleted.TOPIC}', '{User.RemovedFromOrganization.TOPIC}')
  AND departure.recorded_at <= $2 AND {ASSIGNED_TX}
  AND NOT EXISTS (
      SELECT FROM events AS erasure
      WHERE erasure.org_id = departure.org_id AND erasure.stream_id = departure.stream_id
        AND erasure.type = '{User.Erased.TOPIC}')
GROUP BY departure.stream_id
HAVING $3::timestamptz IS NULL OR (min(departure.recorded_at), departure.stream_id) > ($3, $4::uuid)
ORDER BY left_at, departure.stream_id
LIMIT $5
"""


async def left_not_erased(
    connection: Connection,
    org_id: uuid.UUID,
    until: datetime.datetime,
    limit: int,
    after: LeftKey | None = None,
) -> list[LeftKey]:
    """Up to `limit` of the organization's users who left at or before `until` and were not erased, after
    `after`, in the order they first left."""
    rows = await connection.fetch(
        _LEFT_NOT_ERASED,
        org_id,
        until,
        after.left_at if after else None,
        after.user_id if after else None,
        limit,
    )
    return [LeftKey(row["left_at"], row["stream_id"]) for row in rows]


# How an admin is told why a user is out of the organization.
_HOW_THEY_LEFT = {
    "okta_deactivation": "deactivated by the identity provider",
    "okta_delete": "deleted by the identity provider",
    "admin": "removed by an admin",
}


class AwaitingErasure(msgspec.Struct, frozen=True):
    """A user who left the organization and whose personal data is still held: what the log holds of their
    name (read through the store, as every reader of the log reads it), how and when they left, and when the
    organization's retention policy erases them (None: not until an admin does)."""

    user_id: uuid.UUID
    user_name: str | None
    display_name: str | None
    how: str
    # Deleted by the identity provider: no longer in the directory (a removed user still is).
    deleted: bool
    left_on: datetime.datetime
    due: datetime.datetime | None


class AwaitingPage(msgspec.Struct, frozen=True):
    """A page of users awaiting erasure; `next`: where the next page starts, None on the last."""

    users: list[AwaitingErasure]
    next: LeftKey | None


def _awaiting(user: User, first_left: datetime.datetime, retention_days: int | None) -> AwaitingErasure:
    left_on = user.left_on or first_left
    cause = "okta_delete" if user.deleted else user.departure.cause if user.departure else ""
    name = user.attributes.get("name")
    display = user.attributes.get("displayName") or (
        name.get("formatted") if isinstance(name, dict) else None
    )
    user_name = user.attributes.get("userName")
    return AwaitingErasure(
        user.id,
        user_name if isinstance(user_name, str) else None,
        display if isinstance(display, str) else None,
        _HOW_THEY_LEFT.get(cause, "left the organization"),
        user.deleted,
        left_on,
        left_on + datetime.timedelta(days=retention_days) if retention_days else None,
    )


class ErasureService:
    def __init__(self, store: EventStore, scim_call_errors: ScimCallErrors) -> None:
        self._store = store
        self._scim_call_errors = scim_call_errors

    async def subject(self, org_id: uuid.UUID, user_id: uuid.UUID) -> User:
        """The user an erasure would erase, deleted or not, as their stream tells them; NotFound if
        `user_id` names no user of the organization."""
        async with self._store.autocommit() as transaction:
            user = (await transaction.load(org_id, [user_id])).get(user_id)
        if not isinstance(user, User):
            raise NotFound(_NO_SUCH_USER)
        return user

    async def awaiting(
        self, org_id: uuid.UUID, retention_days: int | None, limit: int, after: LeftKey | None = None
    ) -> AwaitingPage:
        """The organization's users who left and are not erased, in the order they first left, a page of up
        to `limit` after `after`: fewer when some of them came back since, and their aggregates say so."""
        async with self._store.autocommit() as transaction:
            keys = await left_not_erased(
                transaction.connection, org_id, datetime.datetime.now(datetime.UTC), limit + 1, after
            )
            # The page's streams in one statement (what they hold of the person is what the log holds).
            users = await transaction.load(org_id, [key.user_id for key in keys[:limit]])
        shown = [
            _awaiting(user, key.left_at, retention_days)
            for key in keys[:limit]
            if isinstance(user := users.get(key.user_id), User) and user.erasure_refusal() is None
        ]
        return AwaitingPage(shown, keys[limit - 1] if len(keys) > limit else None)

    async def erase(
        self,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        reason: str,
        metadata: Metadata,
        *,
        reason_by_policy: bool = False,
    ) -> Erasure:
        """Erase the user's personal data; NotFound if `user_id` names no user of the organization,
        NotErasable (domain/errors.py) if they may not be erased. `reason_by_policy`: see `User.erase`."""
        # Refused calls this process holds in memory are written first, so that the purge below finds them.
        await self._scim_call_errors.flush(org_id)
        for attempt in range(_ATTEMPTS):
            try:
                async with self._store.transaction() as transaction:
                    await transaction.lock_stream(user_id)
                    user = (await transaction.load(org_id, [user_id])).get(user_id)
                    if not isinstance(user, User):
                        raise NotFound(_NO_SUCH_USER)
                    # Read before the erasure: once the key is gone, the log no longer shows them.
                    quoted = [str(user_id), *await _personal_values_ever(transaction, org_id, user_id)]
                    user.erase(reason, reason_by_policy=reason_by_policy)
                    [*_, erased] = await transaction.save(org_id, [user], metadata)
                    await destroy_data_key(transaction.connection, org_id, user_id)
                    await _purge(transaction.connection, org_id, user_id, quoted)
                return Erasure(user_id, erased.recorded_at, metadata.actor, erased.payload["reason"])
            except ConcurrencyConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


async def _personal_values_ever(transaction: Transaction, org_id: uuid.UUID, user_id: uuid.UUID) -> list[str]:
    """Every personal value the person's stream ever held, longest first: not only their latest profile's,
    since a refused call or a stored response may quote the userName or e-mail address they had before a
    rename."""
    values: set[str] = set()
    for recorded in await transaction.read_stream(org_id, user_id):
        field = PROFILE_FIELDS.get(recorded.type)
        if field is not None:
            profile = getattr(recorded.to_domain_event(), field)  # upcast: version 1 kept the e-mail apart
            values.update(personal_values(profile) if isinstance(profile, dict) else ())
    return sorted(values, key=lambda value: (-len(value), value))


async def _purge(connection: Connection, org_id: uuid.UUID, user_id: uuid.UUID, quoted: list[str]) -> None:
    """The tables outside the log that may quote the person (see the module)."""
    await connection.execute(_PURGE_IDEMPOTENCY, org_id, [value.encode() for value in quoted])
    await connection.execute(_PURGE_CALL_ERRORS, org_id, user_id, quoted[1:])
    for row in await connection.fetch(_PARKED_QUOTING, quoted[1:]):
        error = row["error"]
        for value in quoted[1:]:
            error = error.replace(value, ERASED)
        await connection.execute(
            "UPDATE parked_events SET error = $3 WHERE name = $1 AND position = $2",
            row["name"],
            row["position"],
            error,
        )
