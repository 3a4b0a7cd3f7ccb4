"""What a request handler may use, built once per process in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.infrastructure.admission import Admission
from app.infrastructure.audit_signing_key import AuditSigningKey
from app.infrastructure.ratelimit import RateLimit
from app.infrastructure.settings import Settings
from app.services.access import AccessService
from app.services.catalog import CatalogService
from app.services.connection_status import ConnectionStatusService
from app.services.console import ConsoleAccess
from app.services.erasure import ErasureService
from app.services.event_feed import EventFeed
from app.services.groups import GroupService
from app.services.org_schemas import OrgSchemaService, UserTypes
from app.services.read_replica import ReadReplica
from app.services.retention import RetentionSweeper
from app.services.scim_call_errors import ScimCallErrors
from app.services.tenancy import Authenticator, OrgLookup
from app.services.users import UserService
from app.services.webhook_delivery import WebhookDispatcher
from app.services.webhooks import WebhookService
from domain.errors import NotFound
from eventstore.consumers import Consumer
from eventstore.notify import CommitNotifier
from eventstore.store import EventStore
from projections.scim import ScimProjection
from projections.scim_paging import PageEnds


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool[asyncpg.Record]
    store: EventStore
    notifier: CommitNotifier
    users: UserService
    # Erases a person's data (the CLI, the API, the console and the retention sweep call it).
    erasure: ErasureService
    # Erases the users an organization's retention policy says are due; runs beside the runner.
    retention: RetentionSweeper
    groups: GroupService
    catalog: CatalogService
    authenticator: Authenticator
    orgs: OrgLookup
    projection: ScimProjection
    consumers: tuple[Consumer, ...]
    page_ends: PageEnds
    rate_limiter: RateLimit
    admission: Admission
    schemas: OrgSchemaService
    user_types: UserTypes
    feed: EventFeed
    # Where auditors read: the replica if there is one (app/services/read_replica.py).
    reads: ReadReplica
    webhooks: WebhookService
    # Delivers the webhooks; runs beside the runner (app/bootstrap.py), in the process that runs the runner.
    webhook_dispatcher: WebhookDispatcher
    access: AccessService
    console: ConsoleAccess
    # Noted by the HTTP edge, written in batches; `aclose` it before the pool closes (app/bootstrap.py).
    scim_call_errors: ScimCallErrors
    connection_status: ConnectionStatusService
    # Signs evidence bundles (app/services/evidence.py); found or generated on first use.
    audit_signing_key: AuditSigningKey

    def consumer(self, name: str) -> Consumer:
        for consumer in self.consumers:
            if consumer.name == name:
                return consumer
        raise NotFound(f"No projection or reactor named '{name}'.")
