"""Webhook endpoints, as an organization's admin manages them: create (the signing secret is shown once), list,
update, delete, rotate the secret, pause, resume, replay from a point of the log, and read the delivery log.

Delivering is app/services/webhook_delivery.py's; both meet in the table `webhook_endpoints` (migration
0020). Every change here sends a NOTIFY on `WEBHOOKS_CHANNEL` in its transaction, so the dispatcher (in this
process or another) takes it into account at once rather than at its next poll.

Secrets are Standard Webhooks' own format, 'whsec_' and 32 random bytes in base64, stored encrypted
(app/infrastructure/webhook_keys.py).
"""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from collections.abc import Sequence
from typing import TypeVar

import asyncpg
import msgspec

from app.infrastructure.webhook_http import check_url
from app.infrastructure.webhook_keys import WebhookKeys
from domain.errors import InvalidWebhook, NotFound
from eventstore.pool import Connection
from eventstore.records import LogPosition, RecordedEvent
from projections.public_event_mapping import event_id

_T = TypeVar("_T")
WEBHOOKS_CHANNEL = "scimledger_webhooks"
# How long the previous secret still signs after a rotation, so that receivers can switch without a gap:
# each request carries both signatures meanwhile, as Standard Webhooks allows.
PREVIOUS_SECRET_GRACE = datetime.timedelta(hours=24)
MAX_EVENT_TYPES = 100
MAX_DESCRIPTION_LENGTH = 500
# Each active endpoint has a delivery task and an HTTP connection of its own (webhook_delivery.py): the
# cap bounds what one organization makes the dispatcher hold.
MAX_ACTIVE_ENDPOINTS = 20

EndpointState = str  # 'active', 'paused' or 'disabled'


class WebhookEndpoint(msgspec.Struct, frozen=True):
    """An endpoint as its owner sees it; never its secret."""

    endpoint_id: uuid.UUID
    org_id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    state: EndpointState
    disabled_reason: str | None
    # Where it stands in the log: the last event it is done with (delivered, or not of its types).
    position: int
    # Failed attempts at its next event, and when the next is due.
    attempts: int
    next_attempt_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class CreatedEndpoint(msgspec.Struct, frozen=True):
    endpoint: WebhookEndpoint
    # Shown this once: only its encryption is kept.
    secret: str


class DeliveryAttempt(msgspec.Struct, frozen=True):
    attempt_id: int
    webhook_id: str
    event_position: int
    event_type: str
    attempt: int
    attempted_at: datetime.datetime
    duration_ms: int
    status: int | None
    error: str | None
    succeeded: bool


_ENDPOINT_COLUMNS = (
    "endpoint_id, org_id, url, event_types, description, state, disabled_reason, position, attempts, "
    "next_attempt_at, created_at, updated_at"
)
_DELIVERY_COLUMNS = (
    "attempt_id, webhook_id, event_position, event_type, attempt, attempted_at, duration_ms, status, error, "
    "succeeded"
)
# A new endpoint starts at the oldest transaction still running: every event that commits after it is
# created is delivered (an event whose transaction began earlier but commits later included), and at worst a
# few that committed just before it. Starting at the newest event instead would skip such a late commit.
_CREATE = f"""
INSERT INTO webhook_endpoints (org_id, endpoint_id, url, event_types, description, secret, tx, position)
VALUES ($1, $2, $3, $4, $5, $6, pg_snapshot_xmin(pg_current_snapshot()), 0)
RETURNING {_ENDPOINT_COLUMNS}
"""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_id_of(event: RecordedEvent) -> str:
    """The `webhook-id` of an event: the feed's `id` of it (in the body too), the same on every attempt, every
    replay and after a crash, so that a receiver de-duplicates; it says nothing of the log's size."""
    return event_id(event.org_id, event.stream_id, event.version)


class WebhookService:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], keys: WebhookKeys, allow_private: bool) -> None:
        self._pool = pool
        self._keys = keys
        self._allow_private = allow_private

    async def create(
        self, org_id: uuid.UUID, url: str, event_types: Sequence[str] = (), description: str = ""
    ) -> CreatedEndpoint:
        check_url(url, self._allow_private)
        types, description = _checked_types(event_types), _checked_description(description)
        secret = new_secret()
        async with self._pool.acquire() as connection, connection.transaction():
            await _check_room_for_active(connection, org_id, None)
            row = await connection.fetchrow(
                _CREATE, org_id, uuid.uuid4(), url, types, description, self._keys.encrypt(secret)
            )
            await _notify(connection)
        assert row is not None
        return CreatedEndpoint(_endpoint(row), secret)

    async def endpoints(
        self, org_id: uuid.UUID, after: uuid.UUID | None = None, limit: int = 100
    ) -> list[WebhookEndpoint]:
        """The organization's endpoints in the order of their ids, after `after` (a cursor) if given."""
        rows = await self._pool.fetch(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 "
            "AND ($2::uuid IS NULL OR endpoint_id > $2) ORDER BY endpoint_id LIMIT $3",
            org_id,
            after,
            limit,
        )
        return [_endpoint(row) for row in rows]

    async def get(self, org_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        row = await self._pool.fetchrow(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 AND endpoint_id = $2",
            org_id,
            endpoint_id,
        )
        return _endpoint(_found(row))

    async def update(
        self,
        org_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
    ) -> WebhookEndpoint:
        """Change what is given; None leaves a field as it is."""
        if url is not None:
            check_url(url, self._allow_private)
        types = _checked_types(event_types) if event_types is not None else None
        description = _checked_description(description) if description is not None else None
        return await self._change(
            org_id,
            endpoint_id,
            "url = coalesce($3, url), event_types = coalesce($4, event_types), "
            "description = coalesce($5, description)",
            url,
            types,
            description,
        )

    async def delete(self, org_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
        """The endpoint and its delivery log. An attempt in flight may still arrive at the receiver."""
        async with self._pool.acquire() as connection, connection.transaction():
            deleted = await connection.fetchval(
                "DELETE FROM webhook_endpoints WHERE org_id = $1 AND endpoint_id = $2 RETURNING endpoint_id",
                org_id,
                endpoint_id,
            )
            _found(deleted)
            await _notify(connection)

    async def rotate_secret(self, org_id: uuid.UUID, endpoint_id: uuid.UUID) -> str:
        """A new secret, shown this once; the previous one signs too for PREVIOUS_SECRET_GRACE."""
        secret = new_secret()
        await self._change(
            org_id,
            endpoint_id,
            "previous_secret = secret, previous_secret_until = now() + $4::interval, secret = $3",
            self._keys.encrypt(secret),
            PREVIOUS_SECRET_GRACE,
        )
        return secret

    async def pause(self, org_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """Stop delivering; events keep their place and go out, in order, on resume. A disabled endpoint stays
        disabled (with its reason) until resumed."""
        return await self._change(
            org_id, endpoint_id, "state = CASE WHEN state = 'disabled' THEN state ELSE 'paused' END"
        )

    async def resume(self, org_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """Deliver again from where it stopped, the event it gave up on first, with a fresh schedule."""
        return await self._change(
            org_id,
            endpoint_id,
            "state = 'active', disabled_reason = NULL, attempts = 0, next_attempt_at = NULL",
            activates=True,
        )

    async def replay(self, org_id: uuid.UUID, endpoint_id: uuid.UUID, after: LogPosition) -> WebhookEndpoint:
        """Deliver again every event after `after` (see `position_before`), in order, and go on from there; the
        endpoint becomes active. Events it already received keep their webhook-id."""
        return await self._change(
            org_id,
            endpoint_id,
            "tx = $3, position = $4, state = 'active', disabled_reason = NULL, attempts = 0, "
            "next_attempt_at = NULL",
            after.tx,
            after.position,
            activates=True,
        )

    async def position_before(self, org_id: uuid.UUID, webhook_id: str) -> LogPosition:
        """The point just before the organization's event that was sent as `webhook_id` (found in the delivery
        log of any of its endpoints): replaying from it delivers that event first."""
        row = await self._pool.fetchrow(
            "SELECT e.tx, e.position FROM webhook_deliveries AS d JOIN events AS e "
            "ON e.org_id = d.org_id AND e.position = d.event_position "
            "WHERE d.org_id = $1 AND d.webhook_id = $2 LIMIT 1",
            org_id,
            webhook_id,
        )
        if row is None:
            raise NotFound(f"No event of this organization was sent as '{webhook_id}'.")
        return LogPosition(row["tx"], row["position"] - 1)

    async def deliveries(
        self, org_id: uuid.UUID, endpoint_id: uuid.UUID, before: int | None = None, limit: int = 100
    ) -> list[DeliveryAttempt]:
        """The endpoint's attempts, newest first, older than attempt `before` (a cursor) if given."""
        await self.get(org_id, endpoint_id)  # NotFound rather than an empty log for an unknown endpoint
        rows = await self._pool.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE org_id = $1 AND endpoint_id = $2 "
            "AND ($3::bigint IS NULL OR attempt_id < $3) ORDER BY attempt_id DESC LIMIT $4",
            org_id,
            endpoint_id,
            before,
            limit,
        )
        return [msgspec.convert(dict(row), DeliveryAttempt) for row in rows]

    async def _change(
        self,
        org_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        assignments: str,
        *values: object,
        activates: bool = False,
    ) -> WebhookEndpoint:
        async with self._pool.acquire() as connection, connection.transaction():
            if activates:
                await _check_room_for_active(connection, org_id, endpoint_id)
            row = await connection.fetchrow(
                f"UPDATE webhook_endpoints SET {assignments}, updated_at = now() "
                f"WHERE org_id = $1 AND endpoint_id = $2 RETURNING {_ENDPOINT_COLUMNS}",
                org_id,
                endpoint_id,
                *values,
            )
            await _notify(connection)
        return _endpoint(_found(row))


async def _check_room_for_active(
    connection: Connection, org_id: uuid.UUID, endpoint_id: uuid.UUID | None
) -> None:
    """InvalidWebhook if one more of the organization's endpoints (other than `endpoint_id`) may not become
    active. The lock, to the transaction's end, keeps two at once from both taking the last place."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('scimledger.webhooks:' || $1::uuid::text, 0))", org_id
    )
    active = await connection.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE org_id = $1 AND state = 'active' "
        "AND endpoint_id IS DISTINCT FROM $2",
        org_id,
        endpoint_id,
    )
    if active >= MAX_ACTIVE_ENDPOINTS:
        raise InvalidWebhook(
            f"An organization may have at most {MAX_ACTIVE_ENDPOINTS} active webhook endpoints; pause or "
            "delete one first."
        )


async def _notify(connection: Connection) -> None:
    # Delivered at commit, and not at all on rollback.
    await connection.execute("SELECT pg_notify($1, '')", WEBHOOKS_CHANNEL)


def _found(value: _T | None) -> _T:
    if value is None:
        raise NotFound("No webhook endpoint with this id in this organization.")
    return value


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return msgspec.convert(dict(row), WebhookEndpoint)


def _checked_types(event_types: Sequence[str]) -> list[str]:
    if isinstance(event_types, str):
        raise InvalidWebhook("event_types is a list of event types, not one string.")
    if len(event_types) > MAX_EVENT_TYPES:
        raise InvalidWebhook(f"A webhook may name at most {MAX_EVENT_TYPES} event types.")
    for event_type in event_types:
        name = event_type.removesuffix(".*")
        if not name or len(event_type) > 100 or not all(part.isidentifier() for part in name.split(".")):
            raise InvalidWebhook(
                f"'{event_type}' is not an event type: expected a name such as 'user.created', or 'user.*'."
            )
    return sorted(set(event_types))


def _checked_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidWebhook(f"A webhook's description may be at most {MAX_DESCRIPTION_LENGTH} characters.")
    return description


def wants(event_types: Sequence[str], public_type: str) -> bool:
    """Whether an endpoint subscribed to `event_types` receives events of `public_type`."""
    if not event_types:
        return True
    return any(
        public_type == wanted or (wanted.endswith(".*") and public_type.startswith(wanted[:-1]))
        for wanted in event_types
    )
