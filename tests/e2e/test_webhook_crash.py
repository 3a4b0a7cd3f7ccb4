"""`scimledger serve` killed with SIGKILL in the middle of delivering webhooks, then started again: every event of
the workload reaches the receiver, in log order, and what was in flight is delivered again with the same
webhook-id and body. Counted against the log by SQL."""

from __future__ import annotations

import collections
import signal
import uuid

import asyncpg
import httpx
import msgspec
import pytest

from app.services.event_feed import EventFeed
from app.services.webhooks import WebhookService
from eventstore.notify import CommitNotifier
from tests.conftest import okta_user
from tests.integration.webhook_fixtures import (
    KEY,
    eventually,
    expected_ids,
    keys_for_tests,
    no_webhook_left_active,
    pause_every_webhook,
    receiver,
    start_of,
)
from tests.service import ServiceProcess, new_org
from tests.webhook_receiver import Receiver

__all__ = ["no_webhook_left_active", "receiver"]  # fixtures

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_webhook_left_active")]


async def _post_users(service: ServiceProcess, token: str, count: int) -> None:
    async with httpx.AsyncClient(
        base_url=service.base, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        for _ in range(count):
            response = await client.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:10]}@acme.com"))
            assert response.status_code == 201, response.text


async def test_sigkill_mid_delivery_loses_nothing_and_redelivers_with_the_same_ids(
    cli_env: dict[str, str], pool: asyncpg.Pool, receiver: Receiver
) -> None:
    env = {
        **cli_env,
        "SCIMLEDGER_WEBHOOK_ALLOW_PRIVATE": "true",
        "SCIMLEDGER_WEBHOOK_SECRET_KEY": KEY,
        "SCIMLEDGER_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.4,0.8,1,1,1,1,1,1",
        "SCIMLEDGER_RUNNER_POLL_SECONDS": "0.2",
        "SCIMLEDGER_LOG_FORMAT": "text",
    }
    org_name = f"crash-{uuid.uuid4().hex[:8]}"
    [token] = new_org(env, org_name, "scim")
    org_id = await pool.fetchval("SELECT org_id FROM orgs WHERE name = $1", org_name)
    await pause_every_webhook(pool)  # the service delivers to this test's endpoint alone
    webhooks = WebhookService(pool, keys_for_tests(), allow_private=True)
    created = await webhooks.create(org_id, receiver.url("/crash"))
    receiver.secrets["/crash"].append(created.secret)
    # Each request is answered 0.2 s after it arrives: a kill right after an arrival lands mid-delivery.
    receiver.script("/crash", delay=0.2)
    start = await start_of(pool, created.endpoint.endpoint_id)

    first = ServiceProcess(env).start()
    try:
        await _post_users(first, token, 25)
        await eventually(lambda: len(receiver.received("/crash")) >= 5, what="deliveries under way")
        first.signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.process is not None and first.process.poll() is None:
            first.process.kill()
    received_before_restart = len(receiver.received("/crash"))

    second = ServiceProcess(env).start()
    try:
        await _post_users(second, token, 5)
        expected = await expected_ids(pool, org_id, start)
        assert len(expected) >= 30
        await eventually(
            lambda: receiver.first_receipts("/crash") == expected,
            within=60,
            what="every event after the restart",
        )

        async def all_recorded() -> bool:
            recorded = await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND succeeded",
                created.endpoint.endpoint_id,
            )
            return bool(recorded == len(expected))

        # The receiver counts a request when it arrives; the service, once the 2xx is in.
        await eventually(all_recorded, what="the last delivery recorded")
    finally:
        second.stop()

    receipts = receiver.received("/crash")
    assert all(receipt.verified for receipt in receipts)
    assert received_before_restart < len(expected)  # the kill did interrupt the deliveries
    # What was in flight at the kill was sent again, with the same id and the same body.
    counts = collections.Counter(receipt.webhook_id for receipt in receipts)
    again = [webhook_id for webhook_id, count in counts.items() if count > 1]
    assert again, "the delivery in flight at the kill arrives again"
    for webhook_id in again:
        assert len({receipt.body for receipt in receipts if receipt.webhook_id == webhook_id}) == 1
    # The delivery log holds exactly one success per event of the log: the interrupted attempt left none.
    succeeded = await pool.fetch(
        "SELECT webhook_id FROM webhook_deliveries WHERE endpoint_id = $1 AND succeeded ORDER BY attempt_id",
        created.endpoint.endpoint_id,
    )
    recorded = [row["webhook_id"] for row in succeeded]
    assert collections.Counter(recorded) == collections.Counter(expected), (recorded, expected)
    # Each body is the feed's event, the webhook-id its id; the seal, added when the chain reaches the event,
    # is the only field the feed may have filled in since.
    page = await EventFeed(pool, CommitNotifier(pool)).read(org_id, limit=100)
    in_the_feed = {event["id"]: event for event in msgspec.to_builtins(page.data)}
    for receipt in receipts:
        assert receipt.event["id"] == receipt.webhook_id
        assert {**in_the_feed[receipt.webhook_id], "seal": None} == {**receipt.event, "seal": None}
    assert recorded == expected
