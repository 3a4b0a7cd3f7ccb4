"""An endpoint changed in the middle of a batch (review of 1be3596): the rest of the batch goes out under the
new URL and event types, not the ones read before the change. Each success's transaction returns the row's
settings, and the batch stops when they differ from those it was read with."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from app.services.webhooks import WebhookService
from tests.conftest import Tenant
from tests.integration.webhook_fixtures import dispatching, eventually, post_users, receiver, webhooks
from tests.webhook_receiver import Receiver

__all__ = ["receiver", "webhooks"]


async def test_a_changed_url_gets_no_more_events(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    receiver.script("/old", default="200", delay=0.1)
    receiver.script("/new", default="200")
    created = await webhooks.create(tenant.org.org_id, receiver.url("/old"))
    await post_users(scim, 20)  # 20+ events in the log before delivery starts: one batch
    async with dispatching(pool, database_url):
        await eventually(lambda: len(receiver.received("/old")) >= 2, what="delivery under way")
        await webhooks.update(tenant.org.org_id, created.endpoint.endpoint_id, url=receiver.url("/new"))
        at_change = len(receiver.received("/old"))
        await asyncio.sleep(1.5)
        after_change = len(receiver.received("/old")) - at_change
        # The rest of the batch goes to the new URL.
        await eventually(lambda: len(receiver.received("/new")) > 0, what="delivery to the new URL")
    # One request may have been in flight at the change; nothing more should go to the old URL.
    assert after_change <= 1, f"{after_change} events went to the old URL after it was changed"


async def test_narrowed_event_types_apply_to_the_rest_of_the_batch(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    receiver.script("/narrowed", default="200", delay=0.1)
    created = await webhooks.create(tenant.org.org_id, receiver.url("/narrowed"))
    await post_users(scim, 20)
    async with dispatching(pool, database_url):
        await eventually(lambda: len(receiver.received("/narrowed")) >= 2, what="delivery under way")
        # A type none of these events has: the endpoint wants none of the rest.
        await webhooks.update(
            tenant.org.org_id, created.endpoint.endpoint_id, event_types=["no_such.event_type"]
        )
        at_change = len(receiver.received("/narrowed"))
        await asyncio.sleep(1.5)
        after_change = len(receiver.received("/narrowed")) - at_change
    assert after_change <= 1, f"{after_change} unwanted events were sent after the types were narrowed"
