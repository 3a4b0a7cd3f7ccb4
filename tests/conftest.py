"""Fixtures shared by every tier.

Tests that need PostgreSQL start (or join) the embedded server themselves, in the data dir `make run` uses
(SCIMLEDGER_DATA_DIR, default ./.data), or use SCIMLEDGER_TEST_DATABASE_URL when it is set. Each test
session works in a database of its own, created and migrated here and dropped at the end; tests isolate
themselves from each other by using fresh organizations and ids, never by wiping tables.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from starlette.routing import Mount, Route

from app.bootstrap import build_services
from app.http.app import create_app
from app.infrastructure.database import start_embedded
from app.infrastructure.migrate import migrate
from app.infrastructure.personal_data_keys import personal_data_cipher
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.container import Services
from domain.users import User
from eventstore.personal_data import readable
from eventstore.pool import Connection, connect, create_pool
from eventstore.positions import ensure_position
from eventstore.records import EVENT_COLUMNS, LOG_START, LogPosition, RecordedEvent
from eventstore.runner import Runner, RunnerOptions
from eventstore.store import EventStore

REPO = Path(__file__).resolve().parent.parent
# The key of the session's webhook signing secrets (see `settings`).
WEBHOOK_KEY = Fernet.generate_key().decode()
# The session's evidence-bundle signing key (base64 of 32 raw bytes), as SCIMLEDGER_AUDIT_SIGNING_KEY takes it.
AUDIT_SIGNING_KEY = base64.b64encode(os.urandom(32)).decode()
# The session's key-encryption keys of personal data, as SCIMLEDGER_PERSONAL_DATA_KEYS takes them: the first
# wraps; the second unwraps too, so that a test that rotates to it leaves every other test's keys readable.
PERSONAL_DATA_KEY, PERSONAL_DATA_NEXT_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
PERSONAL_DATA_KEYS = f"{PERSONAL_DATA_KEY},{PERSONAL_DATA_NEXT_KEY}"
# Every process a test starts (the CLI, servers) shares the database, so it shares the keys.
os.environ["SCIMLEDGER_PERSONAL_DATA_KEYS"] = PERSONAL_DATA_KEYS
# Schemathesis cases run, by operation, for the summary at the end of the run (tests/e2e/test_fuzz.py).
FUZZ_CASES = pytest.StashKey[collections.Counter[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FUZZ_CASES] = collections.Counter()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    cases = config.stash[FUZZ_CASES]
    if cases:
        terminalreporter.write_line(
            f"schemathesis: {sum(cases.values())} generated requests across {len(cases)} operations"
        )


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app serves, HEAD aside."""
    found = set()
    for route in create_app(Settings()).routes:
        children = route.routes if isinstance(route, Mount) else [route]
        prefix = route.path if isinstance(route, Mount) else ""
        for child in children:
            assert isinstance(child, Route)
            methods = child.methods or {
                method
                for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
                if hasattr(child.endpoint, method.lower())
            }
            found |= {(method, prefix + child.path) for method in methods if method != "HEAD"}
    return found


def bearer_routes() -> set[tuple[str, str]]:
    """The routes reached by a bearer token, which /openapi.json describes: all but the console's pages,
    which a browser reaches by session (tests/console/test_isolation.py probes them)."""
    return {(method, path) for method, path in app_routes() if not path.startswith("/console")}


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server on which the tests may create databases."""
    configured = os.environ.get("SCIMLEDGER_TEST_DATABASE_URL")
    if configured:
        return configured
    return start_embedded(Path(os.environ.get("SCIMLEDGER_DATA_DIR", REPO / ".data")))


async def create_database(server: str) -> str:
    name = f"scimledger_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server, name)


async def drop_database(server: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    url = await create_database(server_url)
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    yield url
    await drop_database(server_url, url)


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """A database with nothing in it, not even migrations, dropped after the test."""
    url = await create_database(server_url)
    yield url
    await drop_database(server_url, url)


@pytest.fixture(scope="session")
async def pool(database_url: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(
        database_url, min_size=2, max_size=20, personal_data=personal_data_cipher(settings)
    )
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)


def okta_user(user_name: str, **extra: Any) -> dict[str, Any]:
    """The body Okta sends when an admin assigns the app to a person."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
        **extra,
    }


@dataclass(frozen=True)
class Tenant:
    org: tenancy.Org
    token_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def new_tenant(pool: asyncpg.Pool) -> Tenant:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"org-{uuid.uuid4().hex[:10]}")
        token_id, token = await tenancy.issue_token(connection, org.org_id)
    return Tenant(org, token_id, token)


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    return await new_tenant(pool)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # No token cache, so that revocation tests see revocations at once; no runner, so that what a request
    # records is all there is until a test starts one (the `runner` fixture). Races send dozens of one
    # organization's requests at once: no cap on requests in progress (tests/e2e/test_tenant_fairness.py
    # has its own).
    return Settings(
        database_url=database_url,
        token_cache_seconds=0,
        max_body_bytes=64 * 1024,
        worker=False,
        rate_limit_per_second=0,
        org_concurrency=1000,
        # Webhooks to the tests' receivers on loopback; their secrets under a key of the session's.
        webhook_allow_private=True,
        webhook_secret_key=WEBHOOK_KEY,
        audit_signing_key=AUDIT_SIGNING_KEY,
        personal_data_keys=PERSONAL_DATA_KEYS,
    )


@pytest.fixture(scope="session")
async def services(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Services]:
    """The services the app builds, on the test pool, for tests below the HTTP edge."""
    services = build_services(settings, pool)
    yield services
    await services.notifier.aclose()


@pytest.fixture
async def counted_services(
    settings: Settings, database_url: str
) -> AsyncIterator[tuple[Services, list[str]]]:
    """The services on a pool of one connection, with every statement sent on it recorded in the list. One
    connection, so that nothing else runs on it inside a counted write's transaction."""
    statements: list[str] = []

    def record(logged: Any) -> None:
        statements.append(logged.query)

    async def count_statements(connection: asyncpg.Connection) -> None:
        connection.add_query_logger(record)  # on every acquire: a connection keeps one copy of a logger

    counting = await create_pool(
        database_url,
        min_size=1,
        max_size=1,
        setup=count_statements,
        personal_data=personal_data_cipher(settings),
    )
    services = build_services(settings, counting)
    try:
        yield services, statements
    finally:
        await services.notifier.aclose()
        await counting.close()


@pytest.fixture
async def runner(database_url: str, services: Services) -> AsyncIterator[Runner]:
    """The app's projections and reactors, running for the duration of one test."""
    options = RunnerOptions(poll_seconds=0.2, standby_seconds=0.2)
    running = Runner(
        database_url,
        services.consumers,
        options,
        services.notifier,
        services.projection,
        personal_data=personal_data_cipher(services.settings),
    )
    task = asyncio.create_task(running.run())
    yield running
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture(scope="session")
async def asgi_app(settings: Settings) -> AsyncIterator[object]:
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app


@pytest.fixture
async def http(asgi_app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://scim.test/scim/v2") as client:
        yield client


@pytest.fixture
async def scim(http: httpx.AsyncClient, tenant: Tenant) -> httpx.AsyncClient:
    """A client authenticated as a fresh organization's SCIM token."""
    http.headers.update(tenant.headers)
    return http


@pytest.fixture(scope="session")
def cli_env(database_url: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("SCIMLEDGER_TEST_DATABASE_URL", None)
    return env


async def log_tail(connection: Connection, count: int) -> list[LogPosition]:
    """The positions of the log's last `count` events, oldest first."""
    rows = await connection.fetch(
        "SELECT tx, position FROM events ORDER BY tx DESC, position DESC LIMIT $1", count
    )
    return [LogPosition(row["tx"], row["position"]) for row in reversed(rows)]


async def log_head(connection: Connection) -> LogPosition:
    return (await log_tail(connection, 1) or [LOG_START])[-1]


async def start_at_log_head(connection: Connection, consumer_name: str) -> None:
    """Start a consumer at the log's head: the shared test database holds other tests' events."""
    await ensure_position(connection, consumer_name)
    head = await log_head(connection)
    await connection.execute(
        "UPDATE consumer_positions SET tx = $2, position = $3 WHERE name = $1",
        consumer_name,
        head.tx,
        head.position,
    )


async def provisioned_user_names(url: str, org_id: uuid.UUID | None = None) -> set[str]:
    """The userNames the log records as provisioned (in one organization, or in all), read as the service reads
    them: they are stored encrypted, so no SQL can compare them; decrypted with the session's keys."""
    cipher = personal_data_cipher(Settings(database_url=url, personal_data_keys=PERSONAL_DATA_KEYS))
    connection = await connect(url, cipher)
    try:
        stored = await connection.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE type = $1 AND ($2::uuid IS NULL OR org_id = $2)",
            User.Provisioned.TOPIC,
            org_id,
        )
        events = await readable(connection, [RecordedEvent(*row) for row in stored])
    finally:
        await connection.close()
    return {event.payload["attributes"]["userName"] for event in events}
