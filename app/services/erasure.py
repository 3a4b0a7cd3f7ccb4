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
from typing import cast

import asyncpg
import msgspec

from app.services.scim_call_errors import ScimCallErrors
from domain.errors import NotFound
from domain.users import User, personal_values
from eventstore.personal_data import ERASED, destroy_data_key
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import ConcurrencyConflict, EventStore

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


class ErasureService:
    def __init__(self, store: EventStore, scim_call_errors: ScimCallErrors) -> None:
        self._store = store
        self._scim_call_errors = scim_call_errors

    async def erase(self, org_id: uuid.UUID, user_id: uuid.UUID, reason: str, metadata: Metadata) -> Erasure:
        """Erase the user's personal data; NotFound if `user_id` names no user of the organization,
        NotErasable (domain/errors.py) if they may not be erased."""
        # Refused calls this process holds in memory are written first, so that the purge below finds them.
        await self._scim_call_errors.flush(org_id)
        for attempt in range(_ATTEMPTS):
            try:
                async with self._store.transaction() as transaction:
                    await transaction.lock_stream(user_id)
                    user = (await transaction.load(org_id, [user_id])).get(user_id)
                    if not isinstance(user, User):
                        raise NotFound(f"No user {user_id}.")
                    # Read before the erasure: once the key is gone, the aggregate no longer holds them.
                    quoted = [str(user_id), *personal_values(user.attributes)]
                    user.erase(reason)
                    [*_, erased] = await transaction.save(org_id, [user], metadata)
                    # A pooled connection's proxy is the connection to it: the key's annotation names the latter.
                    connection = cast("asyncpg.Connection[asyncpg.Record]", transaction.connection)
                    await destroy_data_key(connection, org_id, user_id)
                    await _purge(transaction.connection, org_id, user_id, quoted)
                return Erasure(user_id, erased.recorded_at, metadata.actor, erased.payload["reason"])
            except ConcurrencyConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


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
