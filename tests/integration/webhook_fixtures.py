"""What the webhook tests share: a receiver, the service, a dispatcher run for one test, and the log's oracle."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.infrastructure.settings import Settings
from app.infrastructure.webhook_keys import WebhookKeys
from app.services.webhook_delivery import DeliveryOptions, WebhookDispatcher
from app.services.webhooks import WebhookService, webhook_id_of
from eventstore.records import RecordedEvent
from projections.public_event_mapping import event_id
from tests.conftest import WEBHOOK_KEY, okta_user
from tests.webhook_receiver import Receiver

# The session's, so that endpoints made through the app's API are signed by the tests' dispatchers too.
KEY = WEBHOOK_KEY


def keys_for_tests() -> WebhookKeys:
    return WebhookKeys(Settings(database_url="postgresql://unused", webhook_secret_key=KEY))


def render(event: RecordedEvent) -> dict[str, Any]:
    """The tests' body: the dispatcher takes any; the public vocabulary is not its concern."""
    return {"id": webhook_id_of(event), "type": event.type, "data": event.payload}


def event_type_of(event: RecordedEvent) -> str:
    return event.type


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


async def pause_every_webhook(pool: asyncpg.Pool) -> None:
    """After a test: endpoints left active would be served by any later dispatcher (another test's, or a
    `scimledger serve` another test starts, without the key), at receivers long gone."""
    await pool.execute("UPDATE webhook_endpoints SET state = 'paused' WHERE state = 'active'")


@pytest.fixture
async def webhooks(pool: asyncpg.Pool) -> AsyncIterator[WebhookService]:
    yield WebhookService(pool, keys_for_tests(), allow_private=True)
    await pause_every_webhook(pool)


@pytest.fixture
async def no_webhook_left_active(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pause_every_webhook(pool)


@contextlib.asynccontextmanager
async def dispatching(
    pool: asyncpg.Pool,
    database_url: str,
    delays: tuple[float, ...] = (0.05,) * 20,
    timeout_seconds: float = 1.0,
    allow_private: bool = True,
) -> AsyncIterator[WebhookDispatcher]:
    options = DeliveryOptions(
        delays, timeout_seconds, allow_private, batch_size=20, poll_seconds=0.2, standby_seconds=0.1
    )
    dispatcher = WebhookDispatcher(pool, keys_for_tests(), render, event_type_of, options)
    task = asyncio.create_task(dispatcher.run(database_url))
    try:
        yield dispatcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def start_of(pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT tx, position FROM webhook_endpoints WHERE endpoint_id = $1", endpoint_id
    )
    assert row is not None
    return row["tx"], row["position"]


async def expected_ids(pool: asyncpg.Pool, org_id: uuid.UUID, after: tuple[int, int]) -> list[str]:
    """The oracle: the organization's events after `after`, in log order, counted by SQL."""
    rows = await pool.fetch(
        "SELECT org_id, stream_id, version FROM events WHERE org_id = $1 AND (tx, position) > ($2::xid8, $3::bigint) "
        "ORDER BY tx, position",
        org_id,
        *after,
    )
    return [event_id(row["org_id"], row["stream_id"], row["version"]) for row in rows]


async def post_users(scim: httpx.AsyncClient, count: int, prefix: str = "u") -> list[str]:
    ids = []
    for number in range(count):
        response = await scim.post(
            "/Users", json=okta_user(f"{prefix}{number}-{uuid.uuid4().hex[:6]}@acme.com")
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def eventually(check: Callable[[], Any], within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)
