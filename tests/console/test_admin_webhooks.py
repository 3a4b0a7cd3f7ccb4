"""The console's webhook pages for the org admin, over the ASGI app: the organization's endpoints and their
state, an endpoint's recent deliveries (status, attempts, last error), paused and resumed."""

from __future__ import annotations

import asyncpg
import httpx

from app.services.container import Services
from tests.console.helpers import console_org, csrf_of, sign_in


async def test_endpoints_and_their_deliveries_are_shown_and_paused_and_resumed(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org = await console_org(pool)
    org_id = org.tenant.org.org_id
    endpoint = (
        await services.webhooks.create(org_id, "http://127.0.0.1:9/receiver", ["user.*"], "HR sync")
    ).endpoint
    # What the dispatcher records of its attempts (app/services/webhook_delivery.py): two failures, then
    # the event delivered.
    for attempt, status, error, succeeded in (
        (1, None, "connection refused", False),
        (2, 503, "HTTP 503 from the receiver", False),
        (3, 204, None, True),
    ):
        await pool.execute(
            "INSERT INTO webhook_deliveries (org_id, endpoint_id, webhook_id, event_position, event_type, "
            "attempt, attempted_at, duration_ms, status, error, succeeded) "
            "VALUES ($1, $2, 'evt_123', 7, 'user.created', $3, now(), 12, $4, $5, $6)",
            org_id,
            endpoint.endpoint_id,
            attempt,
            status,
            error,
            succeeded,
        )
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))

    listing = await browser_like.get("/console/webhooks")
    assert listing.status_code == 200
    assert f'href="/console/webhooks/{endpoint.endpoint_id}">http://127.0.0.1:9/receiver</a>' in listing.text
    assert "HR sync" in listing.text
    assert 'class="badge active">active</span>' in listing.text

    page = await browser_like.get(f"/console/webhooks/{endpoint.endpoint_id}")
    assert page.status_code == 200
    assert page.text.index("HTTP 204") < page.text.index("HTTP 503") < page.text.index("connection refused")
    assert page.text.count('class="badge failed">failed</span>') == 2
    assert "user.*" in page.text

    paused = await browser_like.post(
        f"/console/webhooks/{endpoint.endpoint_id}/pause", data={"csrf_token": csrf}
    )
    assert paused.status_code == 200
    assert (await services.webhooks.get(org_id, endpoint.endpoint_id)).state == "paused"
    assert "Resume deliveries" in paused.text
    resumed = await browser_like.post(
        f"/console/webhooks/{endpoint.endpoint_id}/resume", data={"csrf_token": csrf}
    )
    assert resumed.status_code == 200
    assert (await services.webhooks.get(org_id, endpoint.endpoint_id)).state == "active"

    forged = await browser_like.post(f"/console/webhooks/{endpoint.endpoint_id}/pause", data={})
    assert forged.status_code == 403
    assert (await services.webhooks.get(org_id, endpoint.endpoint_id)).state == "active"


async def test_another_organizations_webhook_is_not_found(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, services: Services
) -> None:
    org, other = await console_org(pool), await console_org(pool)
    theirs = (await services.webhooks.create(other.tenant.org.org_id, "http://127.0.0.1:9/theirs")).endpoint
    csrf = csrf_of(await sign_in(browser_like, org, "admin"))
    assert (await browser_like.get(f"/console/webhooks/{theirs.endpoint_id}")).status_code == 404
    assert "127.0.0.1:9/theirs" not in (await browser_like.get("/console/webhooks")).text
    refused = await browser_like.post(
        f"/console/webhooks/{theirs.endpoint_id}/pause", data={"csrf_token": csrf}
    )
    assert refused.status_code == 404
    assert (await services.webhooks.get(other.tenant.org.org_id, theirs.endpoint_id)).state == "active"
