"""One organization cannot starve the others: `scimledger serve` under uvicorn, with a pool of 8 connections.

Organization A's requests are held inside PostgreSQL (the test locks A's rows, so A's PATCHes wait on
them while holding their connection and their admission), which is what a burst of expensive queries does
to the pool, only deterministic. Each test then checks what the others get meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from app.services import tenancy
from tests.conftest import okta_user
from tests.service import ServiceProcess, new_org

pytestmark = pytest.mark.slow

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
POOL_SIZE = 8
ORG_CAP = 2  # requests one organization may have in progress
# Longer than any wait below, so that no request held by the test is cancelled before the test releases it.
SERVICE_ENV = {
    "SCIMLEDGER_DB_POOL_SIZE": str(POOL_SIZE),
    "SCIMLEDGER_ORG_CONCURRENCY": str(ORG_CAP),
    "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "20",
    "SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS": "30",
    "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
    "SCIMLEDGER_WORKER": "false",
    "SCIMLEDGER_LOG_LEVEL": "warning",
}


def serve(env: dict[str, str]) -> Iterator[ServiceProcess]:
    service = ServiceProcess(env).start()
    yield service
    assert service.stop() == 0, service.output()


@pytest.fixture(scope="module")
def server(cli_env: dict[str, str]) -> Iterator[ServiceProcess]:
    yield from serve({**cli_env, **SERVICE_ENV})


@pytest.fixture(scope="module")
def one_per_token(cli_env: dict[str, str]) -> Iterator[ServiceProcess]:
    yield from serve({**cli_env, **SERVICE_ENV, "SCIMLEDGER_TOKEN_CONCURRENCY": "1"})


async def scim_token_from_before_the_limit(database_url: str, org_name: str) -> str:
    """A third active SCIM token, as an organization may hold from before migration 0018 (issuing one now is
    refused: two at most), written as that older `token issue` did."""
    token = tenancy.TOKEN_PREFIX + secrets.token_urlsafe(32)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO api_tokens (org_id, token_id, secret_hash, scope) "
            "SELECT org_id, $2, $3, 'scim' FROM orgs WHERE name = $1",
            org_name,
            uuid.uuid4(),
            tenancy.hash_token(token),
        )
    finally:
        await connection.close()
    return token


def client(service: ServiceProcess, token: str) -> httpx.AsyncClient:
    # Bounded, so that on a service that queues instead of refusing, the test fails rather than hangs.
    return httpx.AsyncClient(base_url=service.base, headers={"Authorization": f"Bearer {token}"}, timeout=60)


async def provision(service: ServiceProcess, token: str, count: int) -> list[str]:
    async with client(service, token) as scim:
        ids = []
        for _ in range(count):
            response = await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:12]}@fair.example"))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids


def deactivate(scim: httpx.AsyncClient, user_id: str) -> asyncio.Task[httpx.Response]:
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    return asyncio.create_task(scim.patch(f"/Users/{user_id}", json=body))


class Locks:
    """Every SCIM user row of an organization, locked by the test: its writes wait in PostgreSQL."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.transaction = connection.transaction()

    async def release(self) -> None:
        await self.transaction.rollback()


@asynccontextmanager
async def rows_locked(database_url: str, org_name: str) -> AsyncIterator[Locks]:
    connection = await asyncpg.connect(database_url)
    try:
        locks = Locks(connection)
        await locks.transaction.start()
        await connection.execute(
            "SELECT 1 FROM scim_users WHERE org_id = (SELECT org_id FROM orgs WHERE name = $1) FOR UPDATE",
            org_name,
        )
        yield locks
    finally:
        await connection.close()  # releases the locks if the test did not


async def waiting_on_locks(locks: Locks) -> int:
    count: int = await locks.connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def settled(locks: Locks, tasks: list[asyncio.Task[httpx.Response]], within: float = 30) -> int:
    """Waits until each of `tasks` has either been answered or is waiting on the test's locks; returns how
    many are waiting."""
    deadline = time.monotonic() + within
    while True:
        waiting = await waiting_on_locks(locks)
        if waiting + sum(task.done() for task in tasks) >= len(tasks):
            return waiting
        assert time.monotonic() < deadline, "requests neither answered nor waiting in the database"
        await asyncio.sleep(0.05)


def assert_busy(response: httpx.Response, naming: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "429"
    assert naming in body["detail"]
    assert "SCIMLEDGER_ORG_CONCURRENCY" in body["detail"]


async def test_another_organization_is_served_while_one_holds_its_whole_share_and_its_excess_gets_429_at_once(
    server: ServiceProcess,
) -> None:
    busy_name, quiet_name = f"Busy {uuid.uuid4().hex[:6]}", f"Quiet {uuid.uuid4().hex[:6]}"
    [busy_token] = new_org(server.env, busy_name, "scim")
    [quiet_token] = new_org(server.env, quiet_name, "scim")
    busy_users = await provision(server, busy_token, POOL_SIZE)
    [quiet_user] = await provision(server, quiet_token, 1)
    async with (
        client(server, busy_token) as busy,
        client(server, quiet_token) as quiet,
        rows_locked(server.env["DATABASE_URL"], busy_name) as locks,
    ):
        # As many concurrent writes as the pool has connections: the busy organization asks for all of them.
        writes = [deactivate(busy, user_id) for user_id in busy_users]
        held = await settled(locks, writes)
        refused = [task.result() for task in writes if task.done()]

        # Meanwhile the other organization is served, and the busy one's next request is refused, not queued.
        read = await quiet.get(f"/Users/{quiet_user}")
        assert read.status_code == 200, read.text
        assert read.json()["id"] == quiet_user
        more = await busy.get("/Users", params={"filter": 'userName sw "a"'})
        assert_busy(more, "organization")

        assert held == ORG_CAP
        assert len(refused) == POOL_SIZE - held
        for response in refused:
            assert_busy(response, "organization")
        await locks.release()
        # Released, the writes that were let in complete.
        done = await asyncio.gather(*writes)
    assert sorted(response.status_code for response in done) == [200] * held + [429] * len(refused)
    async with client(server, busy_token) as busy:
        assert (await busy.get(f"/Users/{busy_users[0]}")).status_code == 200  # every slot was given back


async def test_one_token_cannot_take_its_whole_organizations_share(one_per_token: ServiceProcess) -> None:
    name = f"Tokens {uuid.uuid4().hex[:6]}"
    first, second = new_org(one_per_token.env, name, "scim", "scim")
    third = await scim_token_from_before_the_limit(one_per_token.env["DATABASE_URL"], name)
    users = await provision(one_per_token, first, 3)
    async with (
        client(one_per_token, first) as okta,
        client(one_per_token, second) as entra,
        client(one_per_token, third) as script,
        rows_locked(one_per_token.env["DATABASE_URL"], name) as locks,
    ):
        held = [deactivate(okta, users[0])]
        assert await settled(locks, held) == 1
        assert_busy(await deactivate(okta, users[1]), "token")

        held.append(deactivate(entra, users[1]))
        assert await settled(locks, held) == 2
        # The organization's 2 are in progress, one per token: a third token is refused too.
        assert_busy(await deactivate(script, users[2]), "organization")
        await locks.release()
        assert [response.status_code for response in await asyncio.gather(*held)] == [200, 200]
