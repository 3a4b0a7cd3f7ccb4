"""Can one organization starve another? Tenant B's `GET /Users/{id}` while tenant A runs its costliest searches.

Each tree under test runs `scimledger serve` under uvicorn on 127.0.0.1 with its default settings (pool,
and whatever limits that tree has; the rate limit off, to load A's users), on a scratch database of its own. Organization A has
`--users` users; B has one, which B's client reads again and again, one request at a time, every 20 ms.
In each turn, and for each tree in turn, B's latency is measured:
- idle: A sends nothing;
- reported: A runs the search of the report (143 `emails[value co "…"]` terms, within the 4,096 characters
  of a filter) from `--clients` concurrent clients, each sending its next request as soon as it is
  answered (after Retry-After when refused with 429, as Okta does; after 1 s when refused with 400, as the
  tree under test may find the filter too costly), from a process of its own;
- bounded: the same, with the costliest filter the current tree admits (SCIMLEDGER_MAX_FILTER_TERMS
  comparisons of which SCIMLEDGER_MAX_FILTER_SUBSTRING_TERMS use `co`, over the e-mails, matching no one).
Between phases the bench waits until the database has finished A's queries, which outlive their requests.

The target: B's p99 under A's load within 2x of B's idle p99. Prints the medians over the turns of each
phase's p50 and p99, and what A's requests got (statuses).

    .venv/bin/python bench/tenant_fairness.py [--baseline-tree /work/base] [--users 2000] [--turns 3]
        [--seconds 8] [--clients 10]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from load.run import Server, errors_logged, free_port, percentile  # bench/load/run.py, beside this script
from scratch import scratch_database, service_keys  # beside this script

from app.infrastructure.database import database_url
from app.infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

B_PAUSE_SECONDS = 0.02  # B samples latency; it does not load the service
A_INVALID_PAUSE_SECONDS = 1.0
REPORTED_FILTER = " or ".join(f'emails[value co "x{index:03}"]' for index in range(143))


def admissible_filter(settings: Settings) -> str:
    substring = settings.max_filter_substring_terms
    terms = [f'emails[value co "q{index:03}"]' for index in range(substring)]
    terms += [
        f'emails[value eq "q{index:03}@none.example"]'
        for index in range(settings.max_filter_terms - substring)
    ]
    return " or ".join(terms)


@dataclass
class Tree:
    name: str
    path: Path
    cli: str = ""
    server: Server | None = None
    a_token: str = ""
    b_token: str = ""
    b_user: str = ""
    url: str = ""
    b_failures: int = 0  # B's answers other than 200
    # phase -> per-turn (p50 ms, p99 ms); phase -> A's statuses over all turns
    figures: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    a_statuses: dict[str, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )

    def run_cli(self, *args: str) -> str:
        return subprocess.run(
            [self.cli, *args],
            env={**os.environ, **service_keys(), "DATABASE_URL": self.url, "SCIMLEDGER_LOG_LEVEL": "warning"},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()


def user_body(index: int) -> dict[str, Any]:
    name = f"user{index}-{uuid.uuid4().hex[:6]}@a.example"
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "A", "familyName": f"User{index}"},
        "emails": [
            {"value": name, "type": "work", "primary": True},
            {"value": f"home{index}@a-home.example", "type": "home"},
        ],
        "active": True,
    }


async def set_up(tree: Tree, server_url: str, users: int, stack: contextlib.AsyncExitStack) -> None:
    tree.url = await stack.enter_async_context(scratch_database(server_url))
    tree.cli = str(tree.path / ".venv" / "bin" / "scimledger")
    tree.run_cli("migrate")
    tokens = []
    for org in ("Tenant A", "Tenant B"):
        org_id = tree.run_cli("org", "create", org).splitlines()[-1]
        tokens.append(tree.run_cli("token", "issue", "--org", org_id))
    tree.a_token, tree.b_token = tokens
    port = free_port()
    env = {
        **service_keys(),
        "DATABASE_URL": tree.url,
        "SCIMLEDGER_LOG_LEVEL": "warning",
        "SCIMLEDGER_LOG_FORMAT": "json",
        # The bench loads A's users faster than a token may write by default.
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
    }
    tree.server = Server(
        f"fairness-{tree.name}", [tree.cli, "serve", "--port", str(port)], port, env, "/healthz"
    )
    stack.callback(tree.server.stop)
    base = f"{tree.server.base}/scim/v2"
    async with httpx.AsyncClient(base_url=base, headers=auth(tree.a_token), timeout=60) as client:
        semaphore = asyncio.Semaphore(4)

        async def provision(index: int) -> None:
            async with semaphore:
                for _attempt in range(1000):
                    response = await client.post("/Users", json=user_body(index))
                    if response.status_code != 429:  # the tree may let A have fewer requests in progress
                        break
                    await asyncio.sleep(0.05)
                response.raise_for_status()

        await asyncio.gather(*(provision(index) for index in range(users)))
    async with httpx.AsyncClient(base_url=base, headers=auth(tree.b_token), timeout=60) as client:
        response = await client.post("/Users", json=user_body(0))
        response.raise_for_status()
        tree.b_user = response.json()["id"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def tenant_a(base: str, token: str, scim_filter: str, clients: int) -> None:
    """Run as a process of its own (`--load-a`), so that its clients' work never delays B's measurements:
    `clients` concurrent searches until stdin closes; then prints A's statuses as JSON."""
    statuses: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=auth(token), timeout=120) as scim:
            while not stop.is_set():
                try:
                    response = await scim.get("/Users", params={"filter": scim_filter})
                except httpx.TransportError:
                    statuses[0] += 1
                    continue
                statuses[response.status_code] += 1
                if response.status_code == 429:
                    # As Okta does. A client that ignores Retry-After gets 429s, which cost the service little,
                    # and then the rate limit's.
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                elif response.status_code == 400:
                    # Refused as too costly: a client does not send the same search again at once.
                    await asyncio.sleep(A_INVALID_PAUSE_SECONDS)

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.to_thread(sys.stdin.read)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(statuses))


async def tenant_b(base: str, tree: Tree, seconds: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, headers=auth(tree.b_token), timeout=120) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.get(f"/Users/{tree.b_user}")
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                tree.b_failures += 1
            await asyncio.sleep(B_PAUSE_SECONDS)
    return latencies


async def quiet(url: str, within: float = 120) -> None:
    """Until no other session of the database is running a query: A's searches outlive their requests."""
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            busy = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            )
            if busy == 0:
                return
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def phase(
    tree: Tree, name: str, scim_filter: str | None, seconds: float, clients: int
) -> tuple[float, float]:
    assert tree.server is not None
    base = f"{tree.server.base}/scim/v2"
    load = None
    if scim_filter is not None:
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--load-a",
            base,
            tree.a_token,
            str(clients),
            env={**os.environ, "BENCH_FILTER": scim_filter},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(2.0)  # A's clients start and reach full concurrency
    latencies = await tenant_b(base, tree, seconds)
    if load is not None:
        output, _ = await asyncio.wait_for(load.communicate(b""), 120)
        for status, count in json.loads(output).items():
            tree.a_statuses[name][int(status)] += count
    await quiet(tree.url)
    figures = (statistics.median(latencies), percentile(latencies, 0.99))
    tree.figures[name].append(figures)
    print(
        f"    {tree.name:8} {name:10} B p50 {figures[0]:8.1f} ms  p99 {figures[1]:8.1f} ms  ({len(latencies)} requests)",
        flush=True,
    )
    return figures


async def main(args: argparse.Namespace) -> None:
    began = time.monotonic()
    current = Settings.from_env()
    server_url = await asyncio.to_thread(database_url, current)
    trees = [Tree("after", ROOT)]
    if args.baseline_tree:
        trees.insert(0, Tree("before", args.baseline_tree))
    admissible = admissible_filter(current)
    phases = [("idle", None), ("reported", REPORTED_FILTER), ("bounded", admissible)]
    async with contextlib.AsyncExitStack() as stack:
        for tree in trees:
            print(f"setting up {tree.name} ({tree.path}): {args.users} users in A", flush=True)
            await set_up(tree, server_url, args.users, stack)
        for tree in trees:  # warm-up, unrecorded: prepared statements, caches
            assert tree.server is not None
            await tenant_b(f"{tree.server.base}/scim/v2", tree, 1.0)
        for turn in range(args.turns):
            print(f"turn {turn + 1} of {args.turns}", flush=True)
            for name, scim_filter in phases:
                for tree in trees:
                    await phase(tree, name, scim_filter, args.seconds, args.clients)
        for tree in trees:
            assert tree.server is not None
            errors = errors_logged(tree.server)
            if errors:
                print(f"{tree.name}: the service logged {len(errors)} errors, e.g. {errors[0][:300]}")
    print()
    print(
        f"Tenant B's GET /Users/{{id}}, medians over {args.turns} turns of {args.seconds} s; A: {args.users} users, "
        f"{args.clients} concurrent clients; admissible filter: {current.max_filter_terms} comparisons, "
        f"{current.max_filter_substring_terms} with co"
    )
    print(f"{'tree':8} {'phase':10} {'p50 ms':>8} {'p99 ms':>8} {'p99/idle p99':>13}  A's answers")
    for tree in trees:
        idle_p99 = statistics.median(p99 for _, p99 in tree.figures["idle"])
        for name, _ in phases:
            p50 = statistics.median(p50 for p50, _ in tree.figures[name])
            p99 = statistics.median(p99 for _, p99 in tree.figures[name])
            answers = ", ".join(
                f"{status or 'no answer'}: {count}" for status, count in sorted(tree.a_statuses[name].items())
            )
            print(f"{tree.name:8} {name:10} {p50:8.1f} {p99:8.1f} {p99 / idle_p99:13.2f}  {answers or '-'}")
    for tree in trees:
        if tree.b_failures:
            print(f"{tree.name}: {tree.b_failures} of B's requests were not answered 200")
    print(f"({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load-a"]:
        base, token, clients = sys.argv[2:5]
        asyncio.run(tenant_a(base, token, os.environ["BENCH_FILTER"], int(clients)))
        sys.exit()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--baseline-tree",
        type=lambda text: Path(text).resolve(),
        help="a checkout of the code before (with its .venv), run in turns",
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
