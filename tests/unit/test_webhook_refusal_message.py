"""A refused delivery does not tell the org admin (in the delivery log) what an internal name resolves to
(review of 1be3596): that would be a DNS oracle into the internal network for anyone with an admin token. The
address is logged on our side only."""

from __future__ import annotations

import logging
import socket

import pytest

from app.infrastructure.webhook_http import WebhookSender


async def test_a_refused_delivery_does_not_reveal_the_internal_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    internal_name = socket.gethostname()  # stands for db.internal.example: resolvable only inside
    address = socket.gethostbyname(internal_name)
    sender = WebhookSender(timeout_seconds=2.0, allow_private=False)
    try:
        with caplog.at_level(logging.WARNING, logger="scimledger.webhooks"):
            answer = await sender.post(f"https://{internal_name}/hook", b"{}", {})
    finally:
        await sender.aclose()
    assert not answer.succeeded
    assert answer.error is not None
    assert address not in answer.error, answer.error
    assert "resolves to a non-public address" in answer.error
    assert address in caplog.text  # for whoever runs the service
