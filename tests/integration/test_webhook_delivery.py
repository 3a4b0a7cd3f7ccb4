"""Webhook delivery over real HTTP, to a receiver on loopback that verifies every signature: everything
delivered in log order after failures and timeouts, the same webhook-id on every retry, one failing endpoint
holding back nobody else, disabling after the schedule, replay, and private addresses refused.

The oracle is the log itself, read by SQL: the organization's events after the endpoint's starting point.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from app.services.webhooks import WebhookService
from tests.conftest import Tenant
from tests.integration.webhook_fixtures import (
    dispatching,
    eventually,
    expected_ids,
    post_users,
    receiver,
    start_of,
    webhooks,
)
from tests.webhook_receiver import Receiver

__all__ = ["receiver", "webhooks"]  # fixtures


async def test_every_event_arrives_in_order_signed_after_the_receiver_failed_and_timed_out(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    receiver.script("/flaky", ["503", "503", "500", "slow", "slow", "404", "503"])
    created = await webhooks.create(tenant.org.org_id, receiver.url("/flaky"), description="flaky")
    receiver.secrets["/flaky"].append(created.secret)
    start = await start_of(pool, created.endpoint.endpoint_id)

    async with dispatching(pool, database_url, timeout_seconds=0.5):
        user_ids = await post_users(scim, 15)
        expected = await expected_ids(pool, tenant.org.org_id, start)
        await eventually(lambda: receiver.first_receipts("/flaky") == expected, what="every event delivered")
        # Nothing more than the log: no stray event arrives later either.
        await eventually(
            lambda: len(receiver.received("/flaky")) == len(expected) + 7, within=5, what="one success each"
        )

    receipts = receiver.received("/flaky")
    assert all(receipt.verified for receipt in receipts)
    assert [receipt.event["id"] for receipt in receipts] == [receipt.webhook_id for receipt in receipts]
    # The first event was attempted 8 times (7 failures then a success), every time with its id and body.
    first = [receipt for receipt in receipts if receipt.webhook_id == expected[0]]
    assert len(first) == 8
    assert len({receipt.body for receipt in first}) == 1
    log = await pool.fetch(
        "SELECT webhook_id, attempt, status, error, succeeded FROM webhook_deliveries WHERE endpoint_id = $1 "
        "ORDER BY attempt_id",
        created.endpoint.endpoint_id,
    )
    assert [row["webhook_id"] for row in log if row["succeeded"]] == expected
    failed = [row for row in log if not row["succeeded"]]
    assert [row["attempt"] for row in failed] == [1, 2, 3, 4, 5, 6, 7]
    assert {row["webhook_id"] for row in failed} == {expected[0]}
    assert [row["status"] for row in failed] == [503, 503, 500, None, None, 404, 503]
    assert "no answer within 0.5 s" in failed[3]["error"]
    endpoint = await webhooks.get(tenant.org.org_id, created.endpoint.endpoint_id)
    assert (endpoint.state, endpoint.attempts) == ("active", 0)
    # The bodies say what the SCIM requests said, though the log stores the personal values encrypted (this
    # test's dispatcher sends each event's payload as its body: see webhook_fixtures.render).
    delivered = {receipt.event["data"]["attributes"]["userName"] for receipt in receipts}
    for user_id in user_ids:
        user_name = (await scim.get(f"/Users/{user_id}")).json()["userName"]
        assert user_name in delivered
        assert user_name.encode() not in await stored_payloads(pool, user_id)
    assert all(b"$erasable" not in receipt.body for receipt in receipts)


async def stored_payloads(pool: asyncpg.Pool, user_id: str) -> bytes:
    rows = await pool.fetch("SELECT payload::text FROM events WHERE stream_id = $1::uuid", user_id)
    return "".join(row[0] for row in rows).encode()


async def test_a_failing_endpoint_holds_back_only_itself(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    receiver.script("/down", default="503")
    down = await webhooks.create(tenant.org.org_id, receiver.url("/down"))
    healthy = await webhooks.create(tenant.org.org_id, receiver.url("/healthy"))
    receiver.secrets["/healthy"].append(healthy.secret)
    start = await start_of(pool, healthy.endpoint.endpoint_id)

    async with dispatching(pool, database_url, delays=(0.3,) * 100):
        await post_users(scim, 10)
        expected = await expected_ids(pool, tenant.org.org_id, start)
        await eventually(lambda: receiver.first_receipts("/healthy") == expected, what="the healthy endpoint")
        await eventually(lambda: len(receiver.received("/down")) >= 3, what="the failing endpoint retrying")
        assert (
            receiver.first_receipts("/down") == expected[:1]
        )  # its first event, again, and nothing after it

    assert all(receipt.verified for receipt in receiver.received("/healthy"))
    endpoint = await webhooks.get(tenant.org.org_id, down.endpoint.endpoint_id)
    assert endpoint.state == "active"
    assert endpoint.attempts >= 2


async def test_an_endpoint_is_disabled_when_its_schedule_runs_out_and_resume_then_replay_deliver_again(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    receiver.script("/gives-up", default="503")
    created = await webhooks.create(tenant.org.org_id, receiver.url("/gives-up"))
    receiver.secrets["/gives-up"].append(created.secret)
    endpoint_id = created.endpoint.endpoint_id
    start = await start_of(pool, endpoint_id)

    async with dispatching(pool, database_url, delays=(0.05, 0.1, 0.2)):
        await post_users(scim, 5)
        expected = await expected_ids(pool, tenant.org.org_id, start)

        async def disabled() -> bool:
            return (await webhooks.get(tenant.org.org_id, endpoint_id)).state == "disabled"

        await eventually(disabled, what="disabled after 4 attempts")
        endpoint = await webhooks.get(tenant.org.org_id, endpoint_id)
        assert endpoint.disabled_reason is not None
        assert expected[0] in endpoint.disabled_reason
        assert "HTTP 503" in endpoint.disabled_reason
        attempts = await webhooks.deliveries(tenant.org.org_id, endpoint_id)
        assert [(attempt.webhook_id, attempt.attempt) for attempt in reversed(attempts)] == [
            (expected[0], number) for number in (1, 2, 3, 4)
        ]
        assert len(receiver.received("/gives-up")) == 4

        receiver.script("/gives-up")  # the receiver is fixed
        await webhooks.resume(tenant.org.org_id, endpoint_id)
        await eventually(lambda: receiver.first_receipts("/gives-up") == expected, what="delivered on resume")

        # The owner replays from the third event: it and those after it arrive again, with their ids.
        before = len(receiver.received("/gives-up"))
        await webhooks.replay(
            tenant.org.org_id, endpoint_id, await webhooks.position_before(tenant.org.org_id, expected[2])
        )
        await eventually(
            lambda: (
                [receipt.webhook_id for receipt in receiver.received("/gives-up")[before:]] == expected[2:]
            ),
            what="replayed",
        )
    assert all(receipt.verified for receipt in receiver.received("/gives-up"))


async def test_a_paused_endpoint_keeps_its_place_and_catches_up_in_order_on_resume(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    created = await webhooks.create(tenant.org.org_id, receiver.url("/paused"))
    start = await start_of(pool, created.endpoint.endpoint_id)
    await webhooks.pause(tenant.org.org_id, created.endpoint.endpoint_id)
    async with dispatching(pool, database_url):
        await post_users(scim, 5)
        expected = await expected_ids(pool, tenant.org.org_id, start)
        await eventually(lambda: True)
        assert receiver.received("/paused") == []
        await webhooks.resume(tenant.org.org_id, created.endpoint.endpoint_id)
        await eventually(lambda: receiver.first_receipts("/paused") == expected, what="caught up")


async def test_a_rotated_secret_signs_beside_the_previous_one_until_receivers_switch(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
) -> None:
    created = await webhooks.create(tenant.org.org_id, receiver.url("/rotated"))
    rotated = await webhooks.rotate_secret(tenant.org.org_id, created.endpoint.endpoint_id)
    assert rotated != created.secret
    assert rotated.startswith("whsec_")
    stored = await pool.fetchval(
        "SELECT secret FROM webhook_endpoints WHERE endpoint_id = $1", created.endpoint.endpoint_id
    )
    assert rotated.encode() not in stored  # encrypted at rest
    # Each receiver knows only one of the two secrets: both verify the same requests.
    receiver.secrets["/rotated"].append(created.secret)
    async with dispatching(pool, database_url):
        await post_users(scim, 2)
        await eventually(lambda: len(receiver.first_receipts("/rotated")) >= 2, what="delivered")
    assert all(receipt.verified for receipt in receiver.received("/rotated"))
    for receipt in receiver.received("/rotated"):
        Webhook(rotated).verify(receipt.body, receipt.headers)
        assert len(receipt.headers["webhook-signature"].split(" ")) == 2


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_receiver_on_a_loopback_address_is_refused_at_delivery_without_the_setting(
    pool: asyncpg.Pool,
    database_url: str,
    scim: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    webhooks: WebhookService,
    host: str,
) -> None:
    # Saved while private addresses were allowed (or a name that resolved elsewhere then); delivered now.
    path = f"/private-{host}"
    created = await webhooks.create(tenant.org.org_id, f"http://{host}:{receiver.port}{path}")
    async with dispatching(pool, database_url, delays=(0.05,), allow_private=False):
        await post_users(scim, 1)

        async def refused() -> bool:
            return bool(await webhooks.deliveries(tenant.org.org_id, created.endpoint.endpoint_id))

        await eventually(refused, what="an attempt recorded")
    attempts = await webhooks.deliveries(tenant.org.org_id, created.endpoint.endpoint_id)
    assert attempts[0].status is None
    assert attempts[0].error is not None
    # Which kind of address, or which address, is for our log only: the owner's log would be a DNS oracle.
    assert "resolves to a non-public address: refused" in attempts[0].error
    assert "loopback" not in attempts[0].error
    assert receiver.received(path) == []
