"""Memory and /healthz while auditors read a large log: an organization of 1,000,000 events.

Loads one organization's history (generated through the domain and loaded with COPY, as replay_rebuild.py
does), then serves it with `scimledger serve --no-worker` from each tree in turn (the baseline tree, when
given, and this one), each on a database of its own, migrated by its own code and holding the same rows,
and measures:
- idle: the process's RSS and /healthz p99;
- eight concurrent GET /audit/history: the whole history on a tree without paging, the largest page
  (limit=SCIMLEDGER_AUDIT_MAX_PAGE_SIZE) on one with it;
- GET /audit/as-of over the whole log;
- on a tree with paging, one client walking every page of the history (the same answer as the baseline's
  single request).
During each, the peak RSS (psutil, sampled every 20 ms) and /healthz latency (probed every 10 ms). A scenario
is stopped, and the server killed, past --rss-cap-mib or --seconds: the figure then says so.
Traffic stays on 127.0.0.1. Prints medians over --rounds turns, the trees alternating.

    .venv/bin/python bench/audit_memory.py [--events 1000000] [--baseline-tree /work/base] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
from load.run import Server, free_port  # beside this script
from replay_rebuild import history
from scratch import copy_events, scratch_database, service_keys

from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from eventstore.pool import init_connection

HERE = Path(__file__).resolve().parent.parent
CONCURRENT_HISTORIES = 8
MIB = 1024 * 1024


@dataclass
class Figures:
    """One scenario on one tree, in one turn."""

    peak_rss_mib: float
    healthz_p99_ms: float
    healthz_max_ms: float
    seconds: float
    stopped: str | None = None  # why the scenario was cut short, if it was


@dataclass
class Tree:
    name: str
    root: Path
    database: str
    pages: bool  # whether /audit/history pages (this change) or answers everything at once
    results: dict[str, list[Figures]] = field(default_factory=dict)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def measure(
    server: Server, work: Callable[[httpx.AsyncClient], Awaitable[None]], cap_mib: int, seconds: float
) -> Figures:
    """Run `work` against `server` while sampling its RSS and probing /healthz; stop it past the caps."""
    process = psutil.Process(server.process.pid)
    peak, latencies, stopped = process.memory_info().rss, [], None
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak, stopped
        while not done.is_set():
            try:
                rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                return
            peak = max(peak, rss)
            if rss > cap_mib * MIB:
                stopped = f"killed at {rss / MIB:,.0f} MiB (cap {cap_mib:,} MiB)"
                server.process.kill()
                return
            await asyncio.sleep(0.02)

    async def probe(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            began = time.perf_counter()
            try:
                await client.get("/healthz")
            except httpx.TransportError:
                return
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.01)

    async with (
        httpx.AsyncClient(base_url=server.base, timeout=seconds) as prober,
        httpx.AsyncClient(base_url=server.base, timeout=seconds) as client,
    ):
        tasks = [asyncio.create_task(sample()), asyncio.create_task(probe(prober))]
        began = time.perf_counter()
        try:
            await asyncio.wait_for(work(client), seconds)
        except TimeoutError:
            stopped = stopped or f"stopped after {seconds:.0f} s"
            server.process.kill()
        except httpx.TransportError:
            stopped = stopped or "the server went away"
        elapsed = time.perf_counter() - began
        done.set()
        await asyncio.gather(*tasks)
    return Figures(peak / MIB, percentile(latencies, 0.99), max(latencies, default=0.0), elapsed, stopped)


async def drain(client: httpx.AsyncClient, path: str, params: dict[str, str], token: str) -> bytes:
    """GET `path`, reading the answer as it arrives and keeping only its last 200 bytes."""
    tail = b""
    async with client.stream(
        "GET", path, params=params, headers={"Authorization": f"Bearer {token}"}
    ) as answer:
        answer.raise_for_status()
        async for chunk in answer.aiter_raw():
            tail = (tail + chunk)[-200:]
    return tail


async def scenarios(tree: Tree, token: str, rounds_left: int, args: argparse.Namespace) -> None:
    """One turn of every scenario on `tree`, a fresh server for each (a killed one takes nothing along)."""
    env = {
        **service_keys(),
        "DATABASE_URL": tree.database,
        "SCIMLEDGER_LOG_LEVEL": "warning",
        "SCIMLEDGER_LOG_FORMAT": "json",
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
        "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "600",
        # Eight auditors at once is the scenario; by default one organization may have 2 requests in progress.
        "SCIMLEDGER_ORG_CONCURRENCY": "16",
    }
    largest = str(Settings().audit_max_page_size) if tree.pages else None
    now = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)).isoformat()

    async def idle(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(3)

    async def histories(client: httpx.AsyncClient) -> None:
        params = {"limit": largest} if largest else {}
        await asyncio.gather(
            *(drain(client, "/audit/history", params, token) for _ in range(CONCURRENT_HISTORIES))
        )

    async def as_of(client: httpx.AsyncClient) -> None:
        await drain(client, "/audit/as-of", {"at": now}, token)

    async def walk(client: httpx.AsyncClient) -> None:
        cursor = None
        while True:
            params = {"limit": str(largest), **({"after": cursor} if cursor else {})}
            answer = await client.get(
                "/audit/history", params=params, headers={"Authorization": f"Bearer {token}"}
            )
            answer.raise_for_status()
            cursor = answer.json()["next"]
            if cursor is None:
                return

    plan: list[tuple[str, Callable[[httpx.AsyncClient], Awaitable[None]]]] = [
        ("idle (3 s)", idle),
        (f"{CONCURRENT_HISTORIES} concurrent /audit/history", histories),
        ("/audit/as-of over the whole log", as_of),
    ]
    if tree.pages and rounds_left == 0:
        plan.append(("one client walking every history page", walk))
    for label, work in plan:
        port = free_port()
        scimledger = str(tree.root / ".venv" / "bin" / "scimledger")
        server = Server(
            f"audit-memory-{tree.name}",
            [scimledger, "serve", "--no-worker", "--port", str(port)],
            port,
            env,
            "/healthz",
        )
        try:
            figures = await measure(server, work, args.rss_cap_mib, args.seconds)
        finally:
            if server.process.poll() is None:
                server.stop()
        tree.results.setdefault(label, []).append(figures)
        print(
            f"  {tree.name:<9} {label:<40} peak RSS {figures.peak_rss_mib:>8,.0f} MiB  /healthz p99 "
            f"{figures.healthz_p99_ms:>8.1f} ms (max {figures.healthz_max_ms:,.0f})  {figures.seconds:6.1f} s"
            + (f"  [{figures.stopped}]" if figures.stopped else ""),
            flush=True,
        )


async def copy_tables(source: str, target: str, tables: tuple[str, ...]) -> None:
    """The rows of `tables`, whole, from one database to another of the same tables (binary COPY)."""
    reader, writer = await asyncpg.connect(source), await asyncpg.connect(target)
    try:
        for table in tables:
            with tempfile.TemporaryFile() as spool:
                await reader.copy_from_table(table, output=spool, format="binary")
                spool.seek(0)
                await writer.copy_to_table(table, source=spool, format="binary")
        await writer.execute("VACUUM (ANALYZE) events")
    finally:
        await reader.close()
        await writer.close()


async def main(args: argparse.Namespace) -> None:
    server_url = await asyncio.to_thread(database_url, Settings.from_env())
    async with contextlib.AsyncExitStack() as databases:
        url = await databases.enter_async_context(scratch_database(server_url))
        connection = await asyncpg.connect(url)
        try:
            await init_connection(connection)  # the jsonb codec the loader's rows are encoded for
            await migrate(connection)
            org = await tenancy.create_org(connection, "Audited")
            _, token = await tenancy.issue_token(connection, org.org_id, scope="auditor")
            started = time.perf_counter()
            rows = history(org.org_id, args.events)
            await copy_events(connection, rows)
            total = len(rows)
            del rows
            await connection.execute("VACUUM (ANALYZE) events")
            print(
                f"{total:,} events generated and loaded in {time.perf_counter() - started:.0f} s", flush=True
            )
        finally:
            await connection.close()
        trees = [Tree("after", HERE, url, pages=True)]
        if args.baseline_tree:
            # The baseline runs on its own schema, migrated by its own code, holding the same rows.
            base_url = await databases.enter_async_context(scratch_database(server_url))
            baseline = Path(args.baseline_tree)
            await asyncio.to_thread(
                subprocess.run,
                [str(baseline / ".venv" / "bin" / "scimledger"), "migrate"],
                env={**os.environ, **service_keys(), "DATABASE_URL": base_url},
                check=True,
                capture_output=True,
                timeout=120,
            )
            await copy_tables(url, base_url, ("orgs", "api_tokens", "events"))
            trees.insert(0, Tree("before", baseline, base_url, pages=False))
        for turn in range(args.rounds):
            print(f"turn {turn + 1} of {args.rounds}", flush=True)
            for tree in trees:
                await scenarios(tree, token, args.rounds - 1 - turn, args)
    report(trees, total, args)


def report(trees: list[Tree], total: int, args: argparse.Namespace) -> None:
    print(
        f"\n{total:,} events in one organization; medians of {args.rounds} turns "
        f"(scimledger serve --no-worker, one process each)\n"
    )
    print(f"{'scenario':<42}{'tree':<8}{'peak RSS MiB':>14}{'healthz p99 ms':>16}{'seconds':>9}  note")
    labels = list(dict.fromkeys(label for tree in trees for label in tree.results))
    for label in labels:
        for tree in trees:
            runs = tree.results.get(label)
            if not runs:
                continue
            stopped = [run.stopped for run in runs if run.stopped]
            print(
                f"{label:<42}{tree.name:<8}{statistics.median(run.peak_rss_mib for run in runs):>14,.0f}"
                f"{statistics.median(run.healthz_p99_ms for run in runs):>16.1f}"
                f"{statistics.median(run.seconds for run in runs):>9.1f}  "
                + (f"{len(stopped)} of {len(runs)} stopped: {stopped[0]}" if stopped else "")
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-tree", help="a checkout of the code before this change, with its .venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-cap-mib", type=int, default=3072, help="kill a server past this RSS")
    parser.add_argument("--seconds", type=float, default=120, help="stop a scenario after this long")
    sys.exit(asyncio.run(main(parser.parse_args())))
