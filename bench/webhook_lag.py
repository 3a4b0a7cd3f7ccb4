"""Webhook delivery lag, and what one active endpoint costs the group PATCHes of Okta's pushes.

1. Lag: POST /Users from 8 concurrent clients, paced (50/s in all) then as fast as they go, through the real app, whose lifespan runs the runner and the
   webhook dispatcher in-process, as `serve` does; one endpoint receives every event at a receiver served by
   uvicorn on loopback in a process of its own. The lag of an event is the time from its row's
   recorded_at (clock_timestamp() at insert, a few ms before the commit) to the receiver answering 2xx.
2. Throughput: one-member group PATCHes (add, then remove) from 8 concurrent clients, in turns with the
   endpoint active and a host app following the feed (GET /api/v1/orgs/{org}/events, long-polling), and with
   the endpoint paused and no feed reader, so that both see the same machine; the medians of the turns.

    .venv/bin/python bench/webhook_lag.py [--users 1000] [--turns 4] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import uvicorn
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from scratch import personal_data_keys, scratch_database  # beside this script

from app.http.app import create_app
from app.infrastructure.database import database_url
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import Metadata
from projections.public_event_mapping import event_id

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CLIENTS = 8


class Receiver:
    """Answers 200 at once and notes when it answered each webhook-id; GET /answered returns them. Served by
    uvicorn in a process of its own (`--receive PORT`), so that it takes no CPU from the app's event loop."""

    def __init__(self) -> None:
        self.answered: dict[str, float] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps(self.answered).encode()})
            return
        webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        self.answered.setdefault(webhook_id, time.time())


class ReceiverProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        command = [sys.executable, __file__, "--receive", str(self.port)]
        self.process = subprocess.Popen(command)
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", verify=False)
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/answered", timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.05)

    async def answered(self) -> dict[str, float]:
        # One request without TLS set-up: a new client loads the CA bundle, which costs the app's CPU.
        answered: dict[str, float] = (await asyncio.to_thread(self._client.get, "/answered")).json()
        return answered

    def stop(self) -> None:
        self._client.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def serving() -> Iterator[ReceiverProcess]:
    receiver = ReceiverProcess()
    try:
        yield receiver
    finally:
        receiver.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def concurrently(count: int, work: Any) -> None:
    queue = iter(range(count))

    async def client() -> None:
        for index in queue:
            await work(index)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


@contextlib.asynccontextmanager
async def app_on(url: str) -> AsyncIterator[tuple[Services, httpx.AsyncClient, uuid.UUID]]:
    settings = Settings(
        database_url=url,
        token_cache_seconds=60,
        rate_limit_per_second=0,
        org_concurrency=1000,
        webhook_allow_private=True,
        webhook_secret_key=Fernet.generate_key().decode(),
        personal_data_keys=personal_data_keys(),
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        services: Services = manager._state["services"]  # the lifespan's own, so the dispatcher sees its pool
        async with services.pool.acquire() as connection:
            org = await tenancy.create_org(connection, "bench")
            _, token = await tenancy.issue_token(connection, org.org_id)
        transport = httpx.ASGITransport(app=manager.app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench/scim/v2", headers=headers
        ) as client:
            yield services, client, org.org_id


async def lag(users: int, server: str, pace: float | None) -> None:
    """`pace`: seconds between POSTs from one client; None for as fast as the clients go."""
    with serving() as receiver:
        async with scratch_database(server) as url, app_on(url) as (services, client, org_id):
            await services.webhooks.create(org_id, receiver.url)

            async def post(index: int) -> None:
                body = {"userName": f"user{index}@bench.example", "active": True}
                assert (await client.post("/Users", json=body)).status_code == 201
                if pace is not None:
                    await asyncio.sleep(pace)

            started = time.perf_counter()
            await concurrently(users, post)
            sent = time.perf_counter() - started
            rows = await services.pool.fetch(
                "SELECT org_id, stream_id, version, extract(epoch FROM recorded_at) AS at FROM events "
                "WHERE org_id = $1",
                org_id,
            )
            deadline = time.monotonic() + 120
            while len(answered := await receiver.answered()) < len(rows):
                assert time.monotonic() < deadline, f"{len(answered)} of {len(rows)} delivered in 120 s"
                await asyncio.sleep(0.2)
    # Each delivery's webhook-id is its event's public id (the feed's `id`).
    lags = [
        (answered[event_id(row["org_id"], row["stream_id"], row["version"])] - float(row["at"])) * 1000
        for row in rows
    ]
    print(
        f"webhook lag, commit to receiver 2xx, POST /Users {'paced' if pace else 'burst'} "
        f"({CLIENTS} clients, {users / sent:.0f}/s): "
        f"p50 {statistics.median(lags):.1f} ms, p99 {percentile(lags, 0.99):.1f} ms, max {max(lags):.1f} ms "
        f"({len(lags)} events)",
        flush=True,
    )


async def patch_turn(client: httpx.AsyncClient, group: str, members: list[str], seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def member(user_id: str) -> None:
        nonlocal done
        add = {"op": "add", "path": "members", "value": [{"value": user_id}]}
        remove = {"op": "remove", "path": f'members[value eq "{user_id}"]'}
        while time.perf_counter() < deadline:
            for operation in (add, remove):
                response = await client.patch(
                    f"/Groups/{group}", json={"schemas": [PATCH_OP], "Operations": [operation]}
                )
                assert response.status_code in (200, 204), response.text
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(member(user_id) for user_id in members))
    return done / (time.perf_counter() - started)


async def follow_feed(client: httpx.AsyncClient, org_id: uuid.UUID, token: str, stop: asyncio.Event) -> int:
    """A host app reading the organization's feed as it grows, long-polling when it has caught up."""
    cursor, read = None, 0
    while not stop.is_set():
        params = {"limit": "100", "wait": "1", **({"after": cursor} if cursor else {})}
        response = await client.get(
            f"http://bench/api/v1/orgs/{org_id}/events",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        read += len(response.json()["data"])
        cursor = response.json()["next_cursor"]
    return read


async def throughput(turns: int, seconds: float, server: str) -> None:
    with serving() as receiver:
        async with scratch_database(server) as url, app_on(url) as (services, client, org_id):
            meta = Metadata("admin:bench")
            await services.catalog.create(PROJECT, org_id, "Bench", meta)
            await services.catalog.create(ROLE, org_id, "Admin", meta)
            group = (await client.get("/Groups")).json()["Resources"][0]["id"]
            members = []
            for index in range(CLIENTS):
                body = {"userName": f"member{index}@bench.example", "active": True}
                members.append((await client.post("/Users", json=body)).json()["id"])
            endpoint = (await services.webhooks.create(org_id, receiver.url)).endpoint
            async with services.pool.acquire() as connection:
                _, admin_token = await tenancy.issue_token(connection, org_id, "admin")
            rates: dict[str, list[float]] = {"none": [], "feed and one endpoint": []}
            read = 0
            for _ in range(turns):
                for label in rates:
                    if label == "none":
                        await services.webhooks.pause(org_id, endpoint.endpoint_id)
                    else:
                        await services.webhooks.resume(org_id, endpoint.endpoint_id)
                    await asyncio.sleep(1)  # the dispatcher catches up between turns
                    stop = asyncio.Event()
                    reader = (
                        asyncio.create_task(follow_feed(client, org_id, admin_token, stop))
                        if label != "none"
                        else None
                    )
                    rates[label].append(await patch_turn(client, group, members, seconds))
                    stop.set()
                    read += await reader if reader is not None else 0
            delivered = len(await receiver.answered())
    none, both = statistics.median(rates["none"]), statistics.median(rates["feed and one endpoint"])
    print(
        f"group PATCH, {CLIENTS} clients, {turns} turns of {seconds:g} s each: none {none:.0f}/s, "
        f"with a feed reader and one endpoint active {both:.0f}/s, ratio {both / none:.2f} "
        f"({delivered} deliveries, {read} events read from the feed)",
        flush=True,
    )


async def main(users: int, turns: int, seconds: float) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    await lag(users, server, pace=CLIENTS / 50)  # 50 POSTs/s in all: the steady state
    await lag(users, server, pace=None)  # as fast as 8 clients go: one endpoint's deliveries fall behind
    await throughput(turns, seconds, server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)  # the receiver's own process
    arguments = parser.parse_args()
    if arguments.receive:
        uvicorn.run(Receiver(), host="127.0.0.1", port=arguments.receive, log_level="warning", lifespan="off")
        sys.exit(0)
    asyncio.run(main(arguments.users, arguments.turns, arguments.seconds))
