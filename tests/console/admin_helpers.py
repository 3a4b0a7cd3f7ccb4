"""What the admin section's tests share: an organization's users, catalog and webhook, made through the same
services as the API's (and the app's own projection written with them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from app.infrastructure.settings import Settings
from app.infrastructure.webhook_keys import WebhookKeys
from app.services.catalog import PROJECT, ROLE, CatalogService
from app.services.users import Invitation, UserService
from app.services.webhooks import WebhookService
from eventstore.records import Metadata
from eventstore.store import EventStore
from projections.scim import ScimProjection
from tests.conftest import WEBHOOK_KEY

ADMIN = Metadata(actor="admin:test")
PREFIX = Settings().group_prefix


def admin_services(pool: asyncpg.Pool) -> tuple[UserService, CatalogService, WebhookService]:
    projection = ScimProjection(PREFIX)
    store = EventStore(pool, projection=projection)
    keys = WebhookKeys(Settings(database_url="postgresql://unused", webhook_secret_key=WEBHOOK_KEY))
    return UserService(store), CatalogService(store, projection.groups), WebhookService(pool, keys, True)


@dataclass
class AdminThings:
    """One of each thing the admin section's paths name, with the texts its pages show."""

    user_id: uuid.UUID
    user_name: str
    project_id: uuid.UUID
    project: str
    role_id: uuid.UUID
    role: str
    group_id: uuid.UUID
    webhook_id: uuid.UUID
    webhook_url: str
    # A user the identity provider deleted: listed nowhere but among those awaiting erasure.
    deleted_user_name: str

    @property
    def ids(self) -> dict[str, str]:
        return {
            "user": str(self.user_id),
            "project": str(self.project_id),
            "role": str(self.role_id),
            "group": str(self.group_id),
            "webhook": str(self.webhook_id),
        }

    @property
    def markers(self) -> list[str]:
        return [
            self.user_name,
            self.deleted_user_name,
            self.project,
            self.role,
            self.webhook_url,
            *self.ids.values(),
        ]


async def admin_things(pool: asyncpg.Pool, org_id: uuid.UUID) -> AdminThings:
    users, catalog, webhooks = admin_services(pool)
    marker = uuid.uuid4().hex[:10]
    user = await users.invite(org_id, Invitation(user_name=f"owned-{marker}@acme.example"), ADMIN)
    deleted = await users.invite(org_id, Invitation(user_name=f"deleted-{marker}@acme.example"), ADMIN)
    await users.delete(org_id, deleted.user_id, ADMIN)
    project_id, _ = await catalog.create(PROJECT, org_id, f"Project{marker}", ADMIN)
    role_id, _ = await catalog.create(ROLE, org_id, f"Role{marker}", ADMIN)
    async with pool.acquire() as connection:
        [group] = await CatalogService.groups(connection, org_id)
    url = f"http://127.0.0.1:9/hook-{marker}"
    endpoint = await webhooks.create(org_id, url)
    return AdminThings(
        user.user_id,
        f"owned-{marker}@acme.example",
        project_id,
        f"Project{marker}",
        role_id,
        f"Role{marker}",
        group.group_id,
        endpoint.endpoint.endpoint_id,
        url,
        f"deleted-{marker}@acme.example",
    )
