"""Managing webhook endpoints: the secret shown once and kept encrypted, updates, validation, pagination,
and one organization never reaching another's endpoints."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from app.infrastructure.settings import Settings
from app.infrastructure.webhook_keys import KEY_FILE_NAME, WebhookKeys
from app.services.webhooks import WebhookService
from domain.errors import InvalidWebhook, InvalidWebhookUrl, NotFound, WebhookKeyMissing
from tests.conftest import Tenant, new_tenant
from tests.integration.webhook_fixtures import webhooks

__all__ = ["webhooks"]  # a fixture


async def test_a_new_endpoint_shows_its_secret_once_and_keeps_it_encrypted(
    pool: asyncpg.Pool, tenant: Tenant, webhooks: WebhookService
) -> None:
    created = await webhooks.create(
        tenant.org.org_id, "https://hooks.example.com/in", ["user.created", "group.*"], "the app"
    )
    assert created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"))) == 32
    endpoint = created.endpoint
    assert (endpoint.url, endpoint.event_types, endpoint.description, endpoint.state) == (
        "https://hooks.example.com/in",
        ["group.*", "user.created"],
        "the app",
        "active",
    )
    stored = await pool.fetchval(
        "SELECT secret FROM webhook_endpoints WHERE endpoint_id = $1", endpoint.endpoint_id
    )
    assert created.secret.encode() not in stored
    assert not hasattr(await webhooks.get(tenant.org.org_id, endpoint.endpoint_id), "secret")


async def test_an_update_changes_what_it_names_and_refuses_what_is_invalid(
    tenant: Tenant, webhooks: WebhookService
) -> None:
    endpoint = (await webhooks.create(tenant.org.org_id, "https://a.example.com/in")).endpoint
    updated = await webhooks.update(tenant.org.org_id, endpoint.endpoint_id, event_types=["user.deactivated"])
    assert (updated.url, updated.event_types) == ("https://a.example.com/in", ["user.deactivated"])
    updated = await webhooks.update(tenant.org.org_id, endpoint.endpoint_id, url="https://b.example.com/in")
    assert (updated.url, updated.event_types) == ("https://b.example.com/in", ["user.deactivated"])
    with pytest.raises(InvalidWebhook, match="not an event type"):
        await webhooks.update(tenant.org.org_id, endpoint.endpoint_id, event_types=["user created"])
    with pytest.raises(InvalidWebhook, match="description"):
        await webhooks.update(tenant.org.org_id, endpoint.endpoint_id, description="x" * 501)
    strict = WebhookService(webhooks._pool, webhooks._keys, allow_private=False)
    with pytest.raises(InvalidWebhookUrl, match="private"):
        await strict.update(tenant.org.org_id, endpoint.endpoint_id, url="https://192.168.0.10/in")
    assert (await webhooks.get(tenant.org.org_id, endpoint.endpoint_id)).url == "https://b.example.com/in"


async def test_endpoints_are_listed_a_page_at_a_time_from_a_cursor(
    tenant: Tenant, webhooks: WebhookService
) -> None:
    made = {
        (await webhooks.create(tenant.org.org_id, f"https://h{n}.example.com/")).endpoint.endpoint_id
        for n in range(5)
    }
    first = await webhooks.endpoints(tenant.org.org_id, limit=3)
    rest = await webhooks.endpoints(tenant.org.org_id, after=first[-1].endpoint_id, limit=3)
    assert len(first) == 3
    assert {endpoint.endpoint_id for endpoint in first + rest} == made


async def test_another_organization_can_neither_see_nor_change_an_endpoint(
    pool: asyncpg.Pool, tenant: Tenant, webhooks: WebhookService
) -> None:
    endpoint = (await webhooks.create(tenant.org.org_id, "https://hooks.example.com/in")).endpoint
    other = (await new_tenant(pool)).org.org_id
    assert await webhooks.endpoints(other) == []
    for attempt in (
        webhooks.get(other, endpoint.endpoint_id),
        webhooks.update(other, endpoint.endpoint_id, description="mine"),
        webhooks.pause(other, endpoint.endpoint_id),
        webhooks.resume(other, endpoint.endpoint_id),
        webhooks.rotate_secret(other, endpoint.endpoint_id),
        webhooks.deliveries(other, endpoint.endpoint_id),
        webhooks.delete(other, endpoint.endpoint_id),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert (await webhooks.get(tenant.org.org_id, endpoint.endpoint_id)).description == ""
    await webhooks.delete(tenant.org.org_id, endpoint.endpoint_id)
    with pytest.raises(NotFound):
        await webhooks.get(tenant.org.org_id, endpoint.endpoint_id)
    with pytest.raises(NotFound):
        await webhooks.position_before(other, str(uuid.uuid4()))


async def test_without_a_key_an_external_database_refuses_webhooks_naming_the_setting(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    keyless = WebhookService(pool, WebhookKeys(Settings(database_url="postgresql://x")), allow_private=False)
    with pytest.raises(WebhookKeyMissing, match="SCIMLEDGER_WEBHOOK_SECRET_KEY"):
        await keyless.create(tenant.org.org_id, "https://hooks.example.com/in")
    assert await keyless.endpoints(tenant.org.org_id) == []


def test_the_embedded_database_gets_a_key_of_its_own_in_the_data_dir(tmp_path: Path) -> None:
    keys = WebhookKeys(Settings(data_dir=str(tmp_path)))
    encrypted = keys.encrypt("whsec_abc")
    key_file = tmp_path / KEY_FILE_NAME
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    assert WebhookKeys(Settings(data_dir=str(tmp_path))).decrypt(encrypted) == "whsec_abc"
