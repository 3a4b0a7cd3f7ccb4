"""`make bench-http-edge`: the HTTP edge under hostile clients, the old tree beside this one, in one run.

Each tree's `scimledger serve` (uvicorn, as in production, on 127.0.0.1, default edge settings) faces:
- (a) 8 clients, each streaming a huge request header (up to 128 MiB, in 64 KiB writes; when the server closes
  a connection the client opens another, until the window ends);
- (b) 300 slowloris clients, each sending one header byte every 2 s and never ending its head.
Before and during each attack it measures `/healthz` (p50/p99 of requests one after another on one
connection), the server's RSS (idle, and the peak during), and for (a) the most bytes the server read of one
connection before closing it, for (b) how long the slowloris connections stayed open (those still open when
the window ends count as the window). A fresh server for each attack, so that what one attack left in memory
does not count against the next. The trees take turns, for `--rounds` rounds; figures are medians of the rounds.

    .venv/bin/python bench/http_edge.py [--baseline-tree /work/base] [--rounds 3] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from load.run import Server, free_port, write_lines, wrk  # beside this script
from scratch import scratch_database, service_keys

from app.infrastructure.database import database_url
from app.infrastructure.settings import Settings

THIS_TREE = Path(__file__).resolve().parents[1]
HUGE_CLIENTS, HUGE_BYTES, HUGE_CHUNK = 8, 128 * 1024 * 1024, 64 * 1024
SLOW_CLIENTS, SLOW_EVERY_SECONDS = 300, 2.0
IDLE_SECONDS = 3.0
FAST_PATH_SECONDS = 5
PROBE_TIMEOUT_SECONDS = 10.0
HEAD = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n"


@dataclass
class Attack:
    """What one turn measured: `/healthz` latencies in ms (a probe that timed out counts as its timeout)."""

    idle_ms: list[float] = field(default_factory=list)
    during_ms: list[float] = field(default_factory=list)
    idle_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    cpu_seconds: float = 0.0  # the server's, during the attack
    # The fast path, before the attack: wrk on /healthz (when wrk is installed), requests/s and p99 ms.
    fast_rps: float = 0.0
    fast_p99_ms: float = 0.0
    # (a): how many connections the server closed, the most sent on one before it did, and all that was sent.
    closed_by_server: int = 0
    most_sent_before_close: int = 0
    streamed: int = 0
    # (b): how long each slowloris connection stayed open.
    open_seconds: list[float] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe(base: str, seconds: float, into: list[float], pid: int, peak: list[float]) -> None:
    """`/healthz` one request after another for `seconds`, sampling the server's RSS between requests."""
    end = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=PROBE_TIMEOUT_SECONDS) as client:
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                client.get("/healthz")
                into.append((time.perf_counter() - started) * 1000)
            except httpx.TransportError:
                into.append(PROBE_TIMEOUT_SECONDS * 1000)
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.01)


def huge_header_client(port: int, end: float, closed: list[int], streamed: list[int]) -> None:
    """Stream a header of up to `HUGE_BYTES` on one connection; when the server closes it, again on another,
    until `end`. `closed` gets what was sent on each connection the server closed, `streamed` the total."""
    chunk = b"a" * HUGE_CHUNK
    total = 0
    while time.monotonic() < end:
        sent = 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
                connection.sendall(HEAD + b"X-Huge: ")
                while sent < HUGE_BYTES and time.monotonic() < end:
                    with contextlib.suppress(TimeoutError):  # not read for now (busy, or buffers full)
                        sent += connection.send(chunk)
                while time.monotonic() < end:  # all sent: wait for the answer, or the window's end
                    with contextlib.suppress(TimeoutError):
                        if not connection.recv(65536):
                            break
        except OSError:
            # Closed by the server. It read at most what was sent: the kernel's buffers may hold the rest.
            closed.append(sent)
        total += sent
    streamed.append(total)


async def slowloris(port: int, window: float) -> list[float]:
    async def one() -> float:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(HEAD + b"X-Slow: ")
                while time.monotonic() - started < window:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            reader.read(), SLOW_EVERY_SECONDS
                        )  # read() ends at the server's close
                        break
                    writer.write(b"a")
            finally:
                writer.close()
        return min(time.monotonic() - started, window)

    return list(await asyncio.gather(*(one() for _ in range(SLOW_CLIENTS))))


@contextlib.contextmanager
def serving(tree: Path, name: str, database: str) -> Iterator[Server]:
    port = free_port()
    env = {
        **service_keys(),
        "DATABASE_URL": database,
        "SCIMLEDGER_LOG_LEVEL": "warning",
        "SCIMLEDGER_LOG_FORMAT": "json",
        "SCIMLEDGER_WORKER": "false",
    }
    server = Server(
        name, [str(tree / ".venv/bin/scimledger"), "serve", "--port", str(port)], port, env, "/healthz"
    )
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.TimeoutExpired:  # still chewing on what an attack sent: not worth waiting for
            server.process.kill()
            server.process.wait()


def turn(tree: Path, name: str, database: str, attack: str, window: float) -> Attack:
    result = Attack()
    with serving(tree, f"http-edge-{name}-{attack}", database) as server:
        pid, port = server.process.pid, int(server.base.rsplit(":", 1)[1])
        if attack == "huge" and shutil.which("wrk"):
            ids = write_lines(Path(tempfile.mkdtemp(prefix="scimledger-bench-")), "none", ["x"])
            result.fast_rps, _, result.fast_p99_ms, _ = wrk(
                server.base, "get_random.lua", {"BENCH_PATH": "/healthz", "BENCH_IDS": ids}, FAST_PATH_SECONDS
            )
        idle_peak = [0.0]
        probe(server.base, IDLE_SECONDS, result.idle_ms, pid, idle_peak)
        result.idle_rss_mib = rss_mib(pid)
        cpu_before = cpu_seconds(pid)
        peak = [result.idle_rss_mib]
        end = time.monotonic() + window
        closed: list[int] = []
        streamed: list[int] = []
        if attack == "huge":
            workers = [
                threading.Thread(target=huge_header_client, args=(port, end, closed, streamed))
                for _ in range(HUGE_CLIENTS)
            ]
        else:
            holder: list[list[float]] = []
            workers = [threading.Thread(target=lambda: holder.append(asyncio.run(slowloris(port, window))))]
        for worker in workers:
            worker.start()
        probe(server.base, window, result.during_ms, pid, peak)
        for worker in workers:
            worker.join(window + 30)
        result.peak_rss_mib = peak[0]
        result.cpu_seconds = cpu_seconds(pid) - cpu_before
        result.closed_by_server = len(closed)
        result.most_sent_before_close = max(closed, default=0)
        result.streamed = sum(streamed)
        if attack == "slow":
            result.open_seconds = holder[0] if holder else []
    return result


def report(name: str, attack: str, turns: list[Attack], window: float) -> list[str]:
    def median(values: Callable[[Attack], float]) -> float:
        return statistics.median(values(turn) for turn in turns)

    def p(fraction: float, values: Callable[[Attack], list[float]]) -> float:
        return median(lambda t: percentile(values(t), fraction))

    timed_out = median(lambda t: sum(ms >= PROBE_TIMEOUT_SECONDS * 1000 for ms in t.during_ms))
    lines = [
        f"{name:<9} idle    /healthz p50 {p(0.5, lambda t: t.idle_ms):8.1f} ms  p99 {p(0.99, lambda t: t.idle_ms):8.1f} ms"
        f"   RSS {median(lambda t: t.idle_rss_mib):6.0f} MiB",
        f"{name:<9} during  /healthz p50 {p(0.5, lambda t: t.during_ms):8.1f} ms  p99 {p(0.99, lambda t: t.during_ms):8.1f} ms"
        f"   RSS {median(lambda t: t.peak_rss_mib):6.0f} MiB peak   server CPU {median(lambda t: t.cpu_seconds):.1f} s"
        f"   probes {median(lambda t: len(t.during_ms)):.0f}, of which timed out ({PROBE_TIMEOUT_SECONDS:g} s) {timed_out:.0f}",
    ]
    if attack == "huge" and all(t.fast_rps for t in turns):
        lines.insert(
            0,
            f"{name:<9} fast path: wrk -c32 on /healthz, {median(lambda t: t.fast_rps):,.0f} requests/s, "
            f"p99 {median(lambda t: t.fast_p99_ms):.1f} ms",
        )
    if attack == "huge":
        closed = median(lambda t: t.closed_by_server)
        most = median(lambda t: t.most_sent_before_close) / 2**20
        lines.append(
            f"{name:<9} huge headers: {median(lambda t: t.streamed) / 2**20:.0f} MiB sent in all; the server closed "
            f"{closed:.0f} connection(s), the most sent on one before it did {most:.1f} MiB"
        )
    else:
        still_open = median(lambda t: sum(seconds >= window for seconds in t.open_seconds))
        lines.append(
            f"{name:<9} slowloris open for p50 {median(lambda t: percentile(t.open_seconds, 0.5)):.1f} s, "
            f"max {median(lambda t: max(t.open_seconds)):.1f} s; {still_open:.0f} of {SLOW_CLIENTS} still open "
            f"at the window's end ({window:g} s)"
        )
    return lines


async def main(baseline_tree: Path | None, rounds: int, window: float) -> None:
    trees = [("after", THIS_TREE)]
    if baseline_tree is not None:
        trees.insert(0, ("before", baseline_tree))
    server_url = await asyncio.to_thread(database_url, Settings.from_env())
    async with contextlib.AsyncExitStack() as stack:
        databases = {name: await stack.enter_async_context(scratch_database(server_url)) for name, _ in trees}
        results: dict[tuple[str, str], list[Attack]] = {}
        for round_number in range(rounds):
            # Alternate which tree goes first, so that neither always runs on a machine the other just warmed.
            order = trees if round_number % 2 == 0 else list(reversed(trees))
            for attack in ("huge", "slow"):
                for name, tree in order:
                    print(f"round {round_number + 1}/{rounds}: {name}, {attack}", file=sys.stderr, flush=True)
                    measured = await asyncio.to_thread(turn, tree, name, databases[name], attack, window)
                    results.setdefault((name, attack), []).append(measured)
    print(
        f"\nHTTP edge, medians of {rounds} round(s); window {window:g} s; "
        f"(a) {HUGE_CLIENTS} clients streaming a header of up to {HUGE_BYTES // 2**20} MiB each, "
        f"(b) {SLOW_CLIENTS} slowloris clients (a header byte every {SLOW_EVERY_SECONDS:g} s)"
    )
    for attack, title in (("huge", "(a) huge headers"), ("slow", "(b) slowloris")):
        print(f"\n{title}")
        for name, _ in trees:
            print("\n".join(report(name, attack, results[(name, attack)], window)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline-tree", type=Path, help="a checkout of the old code, with its .venv installed"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="seconds each attack lasts")
    arguments = parser.parse_args()
    os.chdir(THIS_TREE)
    asyncio.run(main(arguments.baseline_tree, arguments.rounds, arguments.window))
