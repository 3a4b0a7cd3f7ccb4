"""create_app: the one place where the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from app import api_audit, api_groups, api_search, api_users, discovery, openapi, operations
from app.admission import Admission, ReleaseAdmission
from app.catalog import CatalogService
from app.database import database_url
from app.groups import GroupService
from app.http import EXCEPTION_HANDLERS, EdgeMiddleware, endpoint_spellings
from app.migrate import migrate
from app.operations import Metrics, Operations
from app.org_schemas import OrgSchemaService, UserTypes
from app.ratelimit import RateLimiter
from app.services import Services
from app.settings import Settings
from app.tenancy import Authenticator
from app.users import UserService
from eventstore.notify import CommitNotifier
from eventstore.pool import create_pool
from eventstore.runner import Runner, RunnerOptions
from eventstore.store import EventStore
from projections.activity import ProvisioningActivity
from projections.analytics import AnalyticsAccess
from projections.scim import ScimProjection
from projections.scim_sql import PageEnds
from projections.seals import Sealer
from reactors.membership import DeactivationRemovesFromOrganization, RemovalDeactivates

log = logging.getLogger("scimledger")

SCIM_BASE = "/scim/v2"


@asynccontextmanager
async def _runner(
    settings: Settings, url: str, services: Services
) -> AsyncIterator[asyncio.Task[None] | None]:
    """The runner for asynchronous projections and reactors, in this process unless the worker is off."""
    if not settings.worker:
        yield None
        return
    task = asyncio.create_task(build_runner(settings, url, services).run(), name="runner")
    try:
        yield task
    finally:
        # A batch in flight rolls back with its transaction; its events are read again next time.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_runner(settings: Settings, url: str, services: Services) -> Runner:
    options = RunnerOptions(
        poll_seconds=settings.runner_poll_seconds, batch_delay_seconds=settings.runner_batch_delay_seconds
    )
    return Runner(url, services.consumers, options, services.notifier, services.projection)


def build_services(settings: Settings, pool: asyncpg.Pool[asyncpg.Record]) -> Services:
    """The services over `pool`; `await services.notifier.aclose()` before closing the pool."""
    notifier = CommitNotifier(pool)
    projection = ScimProjection(settings.group_prefix)
    store = EventStore(pool, notifier, projection)  # every append writes the SCIM projection with it
    return Services(
        settings=settings,
        pool=pool,
        store=store,
        notifier=notifier,
        users=UserService(store, settings.patch_limits),
        groups=GroupService(store, projection.groups, settings.max_patch_comparisons),
        catalog=CatalogService(store, projection.groups),
        authenticator=Authenticator(pool, settings.token_cache_seconds),
        projection=projection,
        consumers=(
            ProvisioningActivity(),
            AnalyticsAccess(),
            Sealer(),
            DeactivationRemovesFromOrganization(),
            RemovalDeactivates(),
        ),
        page_ends=PageEnds(),
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        admission=Admission.from_settings(settings),
        schemas=OrgSchemaService(store),
        user_types=UserTypes(pool),
    )


def _under(prefix: str, routes: list[Route]) -> list[Route]:
    """`routes` with their paths under `prefix`. Not a Mount: its second router cost 5% of a GET."""
    return [
        Route(prefix + route.path, route.endpoint, methods=route.methods, name=route.name) for route in routes
    ]


def create_app(settings: Settings) -> Starlette:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        url = await asyncio.to_thread(database_url, settings)
        # Bounded waits, so that a database that is down or stuck turns into a prompt 503, never a hang:
        # connecting, and waiting behind another session's lock (lock_timeout), take at most the database
        # timeout. PostgreSQL cancels a statement that runs past the statement timeout (and so stops its work,
        # which is what bounds one request's cost), and the client gives up a second after both in case no
        # answer can arrive at all (a network that drops packets).
        timeout = settings.database_timeout_seconds
        statement_timeout = settings.statement_timeout_seconds
        pool = await create_pool(
            url,
            min_size=1,
            max_size=settings.pool_size,
            timeout=timeout,
            command_timeout=max(timeout, statement_timeout) + 1,
            server_settings={
                "statement_timeout": f"{int(statement_timeout * 1000)}ms",
                "lock_timeout": f"{int(timeout * 1000)}ms",
            },
        )
        try:
            async with pool.acquire() as connection:
                # Migrations are not request queries: one that rebuilds an index may take its time.
                await connection.execute("SET statement_timeout = 0")
                try:
                    applied = await migrate(connection)
                finally:
                    await connection.execute("RESET statement_timeout")
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            services = build_services(settings, pool)
            try:
                async with _runner(settings, url, services) as runner:
                    yield {"services": services, "operations": Operations(services, metrics, runner)}
            finally:
                await services.notifier.aclose()
        finally:
            await pool.close()

    # `.search` first: `/Users/{id}` would match `/Users/.search` too.
    scim_routes = _under(
        SCIM_BASE, [*api_search.ROUTES, *api_users.ROUTES, *api_groups.ROUTES, *discovery.ROUTES]
    )
    return Starlette(
        # Routes are tried in order, so the SCIM routes Okta calls thousands of times come first.
        routes=[
            *scim_routes,
            *_under("/audit", api_audit.ROUTES),
            Route("/healthz", operations.healthz, methods=["GET"]),
            Route("/readyz", operations.readyz, methods=["GET"]),
            Route("/metrics", operations.metrics, methods=["GET"]),
            Route("/openapi.json", openapi.endpoint(openapi.document()), methods=["GET"]),
        ],
        middleware=[
            Middleware(
                EdgeMiddleware,
                metrics=metrics,
                endpoints=endpoint_spellings(route.path for route in scim_routes),
            ),
            Middleware(ReleaseAdmission),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
