"""At most MAX_ACTIVE_ENDPOINTS active endpoints per organization: each has a delivery task and an HTTP
connection of its own, and one organization must not make the dispatcher hold without bound."""

from __future__ import annotations

import asyncpg
import pytest

from app.services.webhooks import MAX_ACTIVE_ENDPOINTS, WebhookService
from domain.errors import InvalidWebhook
from eventstore.records import LogPosition
from tests.conftest import Tenant
from tests.integration.webhook_fixtures import start_of, webhooks

__all__ = ["webhooks"]  # a fixture


async def test_an_organization_may_not_have_more_active_endpoints_than_the_cap(
    pool: asyncpg.Pool, tenant: Tenant, webhooks: WebhookService
) -> None:
    org_id = tenant.org.org_id
    made = [
        (await webhooks.create(org_id, f"https://h{n}.example.com/")).endpoint.endpoint_id
        for n in range(MAX_ACTIVE_ENDPOINTS)
    ]
    with pytest.raises(InvalidWebhook, match=f"at most {MAX_ACTIVE_ENDPOINTS} active"):
        await webhooks.create(org_id, "https://one-too-many.example.com/")
    # A paused one frees its place; resuming it while the place is taken is refused as creating is.
    await webhooks.pause(org_id, made[0])
    extra = (await webhooks.create(org_id, "https://now-there-is-room.example.com/")).endpoint.endpoint_id
    with pytest.raises(InvalidWebhook, match="active"):
        await webhooks.resume(org_id, made[0])
    # An active endpoint is not counted against itself: replaying it is fine at the cap.
    replayed = await webhooks.replay(org_id, extra, LogPosition(*await start_of(pool, extra)))
    assert replayed.state == "active"
