"""The composition root: the one place that builds what a scimledger process runs on, and closes it.

`bootstrap` is entered by `serve`'s HTTP lifespan (app/http/app.py), by `scimledger worker` and by every other
command (app/cli/main.py). Each builds the same things in the same order (the database's URL, the pool, the
schema check or migration, the services, the runner when asked) and closes them in the reverse order; the
callers differ only in what they ask for:

| caller | schema | connections | bounded waits | runner |
|---|---|---|---|---|
| `serve` (the HTTP lifespan) | migrate | SCIMLEDGER_DB_POOL_SIZE | yes | unless SCIMLEDGER_WORKER is off |
| `migrate` | migrate | 1 | no | no |
| `worker` | require current | 4 | no | yes |
| every other command | require current | 2 | no | no |
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.infrastructure.admission import Admission
from app.infrastructure.audit_signing_key import AuditSigningKey
from app.infrastructure.database import database_location, database_url, embedded_exists
from app.infrastructure.migrate import NotMigrated, migrate, require_current_schema
from app.infrastructure.personal_data_keys import personal_data_cipher
from app.infrastructure.ratelimit import rate_limit
from app.infrastructure.settings import Settings
from app.infrastructure.webhook_keys import WebhookKeys
from app.services.access import AccessService
from app.services.catalog import CatalogService
from app.services.connection_status import ConnectionStatusService
from app.services.console import ConsoleAccess
from app.services.container import Services
from app.services.erasure import ErasureService
from app.services.event_feed import EventFeed
from app.services.groups import GroupService
from app.services.org_schemas import OrgSchemaService, UserTypes
from app.services.read_replica import ReadReplica
from app.services.retention import RetentionSweeper
from app.services.scim_call_errors import ScimCallErrors
from app.services.tenancy import Authenticator, OrgLookup
from app.services.users import UserService
from app.services.webhook_delivery import DeliveryOptions, WebhookDispatcher
from app.services.webhooks import WebhookService
from eventstore.notify import CommitNotifier
from eventstore.personal_data import PersonalDataCipher
from eventstore.pool import create_pool
from eventstore.runner import Runner, RunnerOptions
from eventstore.store import EventStore
from projections.activity import ProvisioningActivity
from projections.analytics import AnalyticsAccess
from projections.public_event_mapping import public_type_of, to_public
from projections.scim import ScimProjection
from projections.scim_paging import PageEnds
from projections.seals import Sealer
from reactors.membership import DeactivationRemovesFromOrganization, RemovalDeactivates

log = logging.getLogger("scimledger")


class Schema(enum.Enum):
    """What the root does to the database's schema before it builds anything on it."""

    # `serve` and `migrate`: start the embedded server even when it has no cluster yet (creating one), and
    # apply the pending migrations.
    MIGRATE = "migrate"
    # Every other command: refuse a database whose migrations are not exactly this code's, naming it,
    # without creating anything. Otherwise a command would create a schema, and a cluster-wide role
    # (migration 0007), in whatever database DATABASE_URL happened to name.
    REQUIRE_CURRENT = "require current"


@dataclass(frozen=True, slots=True)
class Root:
    """What `bootstrap` built for one process."""

    services: Services
    # The in-process runner of the asynchronous projections and reactors, when one was asked for.
    runner: asyncio.Task[None] | None
    # The migrations `Schema.MIGRATE` applied, in order; none otherwise.
    applied_migrations: tuple[str, ...]


@contextlib.asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    schema: Schema,
    connections: int,
    bounded_waits: bool = False,
    runner: bool = False,
) -> AsyncIterator[Root]:
    """Everything a process runs on, built in order and closed in the reverse order: the pool on the database
    in use with at most `connections` connections, its schema migrated or checked (`schema`), the services,
    and the runner if `runner`. `bounded_waits`: every wait on the database is bounded by the database
    timeouts, as requests need (see `_open_pool`); commands and the worker wait as long as their work takes."""
    url = await locate_database(settings, create=schema is Schema.MIGRATE)
    # One cipher for the process: the data keys it unwraps, it unwraps once, for the requests and the runner.
    cipher = personal_data_cipher(settings)
    pool = await _open_pool(settings, url, connections, bounded_waits, cipher)
    replica = None
    try:
        applied = await _prepare_schema(settings, pool, schema)
        if settings.replica_database_url:
            # Read-only by design: its connections are kept, not dropped as a writing pool's would be.
            replica = await _open_pool(
                settings, settings.replica_database_url, connections, bounded_waits, cipher, writes=False
            )
        services = build_services(settings, pool, replica)
        try:
            async with _consumers(settings, url, services, cipher, runner) as task:
                yield Root(services, task, applied)
        finally:
            # Before the pool closes, so that the last commits' NOTIFY is not lost, nor the last SCIM errors.
            await services.scim_call_errors.aclose()
            await services.notifier.aclose()
    finally:
        if replica is not None:
            await replica.close()
        await pool.close()


async def locate_database(settings: Settings, *, create: bool, keep_running: bool = False) -> str:
    """The URL of the database in use: DATABASE_URL, else the embedded server's (started if need be, and kept
    running after this process exits if `keep_running`). Without `create`, an embedded server whose data dir
    holds no cluster yet is refused: starting it would create one, which is `migrate`'s (or `serve`'s) to do."""
    if not create and not settings.database_url and not embedded_exists(Path(settings.data_dir)):
        raise NotMigrated(
            f"{database_location(settings)} holds no database yet. Run 'scimledger migrate' to create and "
            "migrate it, or set DATABASE_URL to the database you meant; nothing was created."
        )
    return await asyncio.to_thread(database_url, settings, keep_running)


async def _open_pool(
    settings: Settings,
    url: str,
    connections: int,
    bounded_waits: bool,
    personal_data: PersonalDataCipher,
    *,
    writes: bool = True,
) -> asyncpg.Pool[asyncpg.Record]:
    # Personal data is encrypted and decrypted on the pool's connections (eventstore/personal_data.py).
    if not bounded_waits:
        return await create_pool(
            url, min_size=1, max_size=connections, writes=writes, personal_data=personal_data
        )
    # Bounded waits, so that a database that is down or stuck turns into a prompt 503, never a hang:
    # connecting, and waiting behind another session's lock (lock_timeout), take at most the database
    # timeout. PostgreSQL cancels a statement that runs past the statement timeout (and so stops its work,
    # which is what bounds one request's cost), and the client gives up a second after both in case no
    # answer can arrive at all (a network that drops packets).
    timeout = settings.database_timeout_seconds
    statement_timeout = settings.statement_timeout_seconds
    return await create_pool(
        url,
        min_size=1,
        max_size=connections,
        writes=writes,
        personal_data=personal_data,
        timeout=timeout,
        command_timeout=max(timeout, statement_timeout) + 1,
        server_settings={
            "statement_timeout": f"{int(statement_timeout * 1000)}ms",
            "lock_timeout": f"{int(timeout * 1000)}ms",
        },
    )


async def _prepare_schema(
    settings: Settings, pool: asyncpg.Pool[asyncpg.Record], schema: Schema
) -> tuple[str, ...]:
    """Migrate or check the schema (see `Schema`); returns the migrations applied."""
    async with pool.acquire() as connection:
        if schema is Schema.REQUIRE_CURRENT:
            await require_current_schema(connection, database_location(settings))
            return ()
        # Migrations are not request queries: one that rebuilds an index may take its time.
        await connection.execute("SET statement_timeout = 0")
        try:
            applied = await migrate(connection)
        finally:
            await connection.execute("RESET statement_timeout")
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return tuple(applied)


@contextlib.asynccontextmanager
async def _consumers(
    settings: Settings, url: str, services: Services, personal_data: PersonalDataCipher, wanted: bool
) -> AsyncIterator[asyncio.Task[None] | None]:
    """The runner for asynchronous projections and reactors, in this process if `wanted`."""
    if not wanted:
        yield None
        return
    task = asyncio.create_task(_run_in_background(settings, url, services, personal_data), name="runner")
    try:
        yield task
    finally:
        # A batch in flight rolls back with its transaction; its events are read again next time.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _run_in_background(
    settings: Settings, url: str, services: Services, personal_data: PersonalDataCipher
) -> None:
    """The runner and, beside it, the webhook dispatcher (see app/services/webhook_delivery.py) and the
    retention sweep (app/services/retention.py)."""
    async with asyncio.TaskGroup() as group:
        group.create_task(build_runner(settings, url, services, personal_data).run())
        group.create_task(services.webhook_dispatcher.run(url))
        group.create_task(services.retention.run(url))


def build_runner(
    settings: Settings, url: str, services: Services, personal_data: PersonalDataCipher
) -> Runner:
    options = RunnerOptions(
        poll_seconds=settings.runner_poll_seconds, batch_delay_seconds=settings.runner_batch_delay_seconds
    )
    return Runner(
        url,
        services.consumers,
        options,
        services.notifier,
        services.projection,
        personal_data=personal_data,
    )


def build_services(
    settings: Settings,
    pool: asyncpg.Pool[asyncpg.Record],
    replica: asyncpg.Pool[asyncpg.Record] | None = None,
) -> Services:
    """The services over `pool` (and its streaming `replica`, for auditors and the feed's catch-up, if
    there is one); `await services.scim_call_errors.aclose()` and `services.notifier.aclose()`
    before closing the pool."""
    notifier = CommitNotifier(pool)
    projection = ScimProjection(settings.group_prefix)
    store = EventStore(pool, notifier, projection)  # every append writes the SCIM projection with it
    webhook_keys = WebhookKeys(settings)
    scim_call_errors = ScimCallErrors(pool, settings.scim_errors_kept, settings.scim_errors_flush_seconds)
    erasure = ErasureService(store, scim_call_errors)
    return Services(
        settings=settings,
        pool=pool,
        store=store,
        notifier=notifier,
        users=UserService(store, settings.patch_limits),
        erasure=erasure,
        retention=RetentionSweeper(pool, store, erasure),
        groups=GroupService(store, projection.groups, settings.max_patch_comparisons),
        catalog=CatalogService(store, projection.groups),
        authenticator=Authenticator(pool, settings.token_cache_seconds),
        orgs=OrgLookup(pool),
        projection=projection,
        consumers=(
            ProvisioningActivity(),
            AnalyticsAccess(),
            Sealer(),
            DeactivationRemovesFromOrganization(),
            RemovalDeactivates(),
        ),
        page_ends=PageEnds(),
        rate_limiter=rate_limit(settings, pool),
        admission=Admission.from_settings(settings),
        schemas=OrgSchemaService(store),
        user_types=UserTypes(pool),
        feed=EventFeed(pool, notifier, replica=replica),
        reads=ReadReplica(pool, replica, settings.replica_fresh_wait_seconds),
        webhooks=WebhookService(pool, webhook_keys, settings.webhook_allow_private),
        webhook_dispatcher=WebhookDispatcher(
            pool,
            webhook_keys,
            # The body is the feed's event, so a receiver and a feed reader see the same thing.
            to_public,
            public_type_of,
            DeliveryOptions(
                retry_delays=settings.webhook_retry_delays,
                timeout_seconds=settings.webhook_timeout_seconds,
                allow_private=settings.webhook_allow_private,
                poll_seconds=settings.runner_poll_seconds,
            ),
            notifier,
        ),
        access=AccessService(pool),
        console=ConsoleAccess(
            pool,
            settings.console_link_seconds,
            settings.console_idle_seconds,
            settings.console_session_seconds,
        ),
        scim_call_errors=scim_call_errors,
        connection_status=ConnectionStatusService(pool, scim_call_errors),
        audit_signing_key=AuditSigningKey(settings),
    )
