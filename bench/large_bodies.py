"""Issue 18, point 1: the largest bodies the body limit admits, in the worst shapes, and /healthz meanwhile.

Each scenario is one request whose body is as large as SCIMLEDGER_MAX_BODY_BYTES allows (1 MiB by
default), in a shape that once cost more than linear time:
- PATCH /Users add to emails of 145,000 integers (the reported request: refused, after 68 s);
- PATCH /Users add of as many distinct e-mail objects as fit;
- PATCH /Users with thousands of operations, each adding one e-mail;
- PATCH /Users adding 2,000 e-mails, then thousands of operations each through a value filter;
- PUT and POST /Users with as many e-mails as fit;
- PATCH /Groups adding as many members (real, active users) as fit in one operation.
A probe asks for /healthz every 10 ms throughout; its p99 is reported idle and while the large requests
run, since a request that holds the event loop holds every tenant's requests with it.

With `--baseline-tree DIR` (a checkout with its own .venv, such as the code before the fix), the same
scenarios run against `scimledger serve` from DIR and from this tree, alternating turn by turn, each on a
scratch database of its own. A request is given at most `--timeout` seconds; a tree that exceeds it in a
scenario is not asked again in that scenario, and its service, still held by the request, is killed and
started again, so the run stays bounded. Traffic stays on 127.0.0.1.

    .venv/bin/python bench/large_bodies.py [--baseline-tree /work/base] [--samples 3] [--timeout 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from scratch import personal_data, scratch_database, service_keys  # noqa: E402

from app.infrastructure.database import database_url  # noqa: E402
from app.infrastructure.settings import Settings  # noqa: E402
from bench.load.run import (  # noqa: E402
    LOGS,
    Server,
    errors_logged,
    free_port,
    load_users,
    percentile,
)
from eventstore.pool import create_pool  # noqa: E402
from projections.scim import ScimProjection  # noqa: E402

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
RESULTS = ROOT / "bench" / "results" / "large_bodies.json"
PROBE_INTERVAL = 0.01


def _encoded(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _largest(build: Callable[[int], Any], limit: int) -> bytes:
    """The encoding of `build(n)` for the largest n whose encoding fits in `limit` bytes."""
    low, high = 1, 1
    while len(_encoded(build(high))) <= limit:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(_encoded(build(middle))) <= limit else (low, middle)
    return _encoded(build(low))


def _emails(count: int, prefix: str = "u") -> list[dict[str, str]]:
    return [{"value": f"{prefix}{index}@x.example"} for index in range(count)]


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def _user(user_name: str, emails: list[dict[str, str]]) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": user_name, "active": True, "emails": emails}


@dataclass
class Scenario:
    name: str
    method: str
    body: bytes
    target: str  # "user": a fresh user's URL; "users": the collection; "group": the group's URL
    # POST bodies name a userName, which must be fresh every time: this placeholder is replaced.
    fresh_name: bool = False


def scenarios(limit: int, member_ids: list[str]) -> list[Scenario]:
    # The placeholder is as long as the userName that replaces it, so the body keeps its size.
    name = "x" * 32
    filtered_prefix = [{"op": "add", "path": "emails", "value": _emails(2000)}]
    made = [
        Scenario(
            "PATCH /Users add 145,000 integers to emails (the report)",
            "PATCH",
            _largest(lambda n: _patch({"op": "add", "path": "emails", "value": list(range(n))}), limit),
            "user",
        ),
        Scenario(
            "PATCH /Users add e-mails, one operation",
            "PATCH",
            _largest(lambda n: _patch({"op": "add", "path": "emails", "value": _emails(n)}), limit),
            "user",
        ),
        Scenario(
            "PATCH /Users thousands of operations adding one e-mail each",
            "PATCH",
            _largest(
                lambda n: _patch(*({"op": "add", "path": "emails", "value": email} for email in _emails(n))),
                limit,
            ),
            "user",
        ),
        Scenario(
            "PATCH /Users 2,000 e-mails, then thousands of filtered operations",
            "PATCH",
            _largest(
                lambda n: _patch(
                    *filtered_prefix,
                    *(
                        {
                            "op": "replace",
                            "path": f'emails[value eq "u{index % 2000}@x.example"].display',
                            "value": f"d{index}",
                        }
                        for index in range(n)
                    ),
                ),
                limit,
            ),
            "user",
        ),
        Scenario(
            "PUT /Users with as many e-mails as fit",
            "PUT",
            _largest(lambda n: _user(name, _emails(n)), limit),
            "user",
            fresh_name=True,
        ),
        Scenario(
            "POST /Users with as many e-mails as fit",
            "POST",
            _largest(lambda n: _user(name, _emails(n)), limit),
            "users",
            fresh_name=True,
        ),
    ]
    if member_ids:
        made.append(
            Scenario(
                f"PATCH /Groups add {len(member_ids):,} members in one operation",
                "PATCH",
                _encoded(
                    _patch({"op": "add", "path": "members", "value": [{"value": m} for m in member_ids]})
                ),
                "group",
            )
        )
    return made


def members_that_fit(limit: int) -> int:
    """How many members (by a 36-character id) one add operation may carry within the body limit."""
    sample = str(uuid.uuid4())
    body = _largest(
        lambda n: _patch({"op": "add", "path": "members", "value": [{"value": sample}] * n}), limit
    )
    return len(json.loads(body)["Operations"][0]["value"])


@dataclass
class Tree:
    label: str
    root: Path
    service: Server | None = None
    token: str = ""
    group_url: str = ""
    members: list[str] = field(default_factory=list)
    spares: list[str] = field(default_factory=list)  # users no scenario but one PATCH or PUT touches
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0

    def start(self) -> None:
        self.service = Server(
            f"large-bodies-{self.label}",
            [self.cli, "serve", "--port", str(self.port)],
            self.port,
            self.env,
            "/healthz",
        )

    async def restart(self) -> None:
        """Kill the service, still held by a request given up on (it would be for minutes), and start it again."""
        assert self.service is not None
        self.service.process.kill()
        self.service.process.wait(20)
        await asyncio.to_thread(self.start)

    @property
    def cli(self) -> str:
        return str(self.root / ".venv" / "bin" / "scimledger")

    def run(self, env: dict[str, str], *args: str) -> str:
        return subprocess.run(
            [self.cli, *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}


async def set_up(tree: Tree, env: dict[str, str], members: int, spares: int) -> None:
    """An org with one group, and `members` active users written straight to the log (as the service would
    have) and projected by a rebuild: provisioning them over HTTP took minutes on a shared machine."""
    tree.run(env, "migrate")
    org_id = tree.run(env, "org", "create", "Bench").splitlines()[-1]
    tree.token = tree.run(env, "token", "issue", "--org", "Bench").splitlines()[-1]
    tree.run(env, "project", "create", "--org", "Bench", "Apollo")
    tree.run(env, "role", "create", "--org", "Bench", "Admin")
    pool = await create_pool(env["DATABASE_URL"], min_size=1, max_size=2, personal_data=personal_data())
    try:
        await load_users(pool, uuid.UUID(org_id), members + spares)
        async with pool.acquire() as connection, pool.acquire() as reader:
            await ScimProjection("Statsig").rebuild(connection, reader)
        rows = await pool.fetch(
            "SELECT user_id FROM scim_users WHERE org_id = $1 ORDER BY sort_key", uuid.UUID(org_id)
        )
        ids = [str(row[0]) for row in rows]
        tree.members, tree.spares = ids[:members], ids[members:]
        tree.group_url = "/Groups/" + str(
            await pool.fetchval("SELECT group_id FROM scim_groups WHERE org_id = $1", uuid.UUID(org_id))
        )
    finally:
        await pool.close()
    tree.env, tree.port = env, free_port()
    tree.start()


class Probe:
    """GET /healthz every 10 ms, one at a time, recording each latency and whether a large request was in
    flight when it was sent."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.busy = False
        self.scenario = ""
        self.idle: list[float] = []
        self.during: list[float] = []
        self.by_scenario: dict[str, list[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=600) as client:
            while True:
                busy, scenario = self.busy, self.scenario
                started = time.perf_counter()
                # A service killed while held answers nothing: the wait until then is what is recorded.
                with contextlib.suppress(httpx.TransportError):
                    await client.get("/healthz")
                elapsed = (time.perf_counter() - started) * 1000
                # A probe counts as during a large request if one was in flight when it was sent or answered.
                if busy or self.busy:
                    self.during.append(elapsed)
                    self.by_scenario.setdefault(scenario if busy else self.scenario, []).append(elapsed)
                else:
                    self.idle.append(elapsed)
                await asyncio.sleep(PROBE_INTERVAL)

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Measured:
    seconds: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    timed_out: bool = False


async def measure(tree: Tree, scenario: Scenario, probe: Probe, limit: float, result: Measured) -> None:
    assert tree.service is not None
    async with httpx.AsyncClient(
        base_url=tree.service.base + "/scim/v2", headers=tree.headers, timeout=limit
    ) as client:
        body = scenario.body
        if scenario.fresh_name:
            body = body.replace(b"x" * 32, uuid.uuid4().hex.encode())
        if scenario.target == "users":
            url = "/Users"
        elif scenario.target == "group":
            url = tree.group_url
        else:
            # A user of its own, made before the run: a request to a tree still busy would fail here.
            url = f"/Users/{tree.spares.pop()}"
        probe.busy, probe.scenario = True, scenario.name
        started = time.perf_counter()
        try:
            response = await client.request(scenario.method, url, content=body)
            result.statuses.append(response.status_code)
        except httpx.TimeoutException:
            result.timed_out = True
            result.statuses.append(0)
        finally:
            result.seconds.append(time.perf_counter() - started)
            probe.busy = False
    if result.timed_out:
        await tree.restart()


def stop(server: Server) -> None:
    """Stop a server, killing it if it is still held by a request given up on."""
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(20)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "-"


def _p99(values: list[float]) -> str:
    return f"{percentile(values, 0.99):.1f}" if values else "-"


async def main(baseline_tree: Path | None, samples: int, limit_seconds: float, members: int | None) -> None:
    settings = Settings.from_env()
    limit = settings.max_body_bytes
    members = members_that_fit(limit) if members is None else members
    server = await asyncio.to_thread(database_url, settings)
    trees = ([Tree("before", baseline_tree)] if baseline_tree else []) + [Tree("after", ROOT)]
    async with contextlib.AsyncExitStack() as stack:
        for tree in trees:
            url = await stack.enter_async_context(scratch_database(server))
            env = {
                **service_keys(),
                "DATABASE_URL": url,
                "SCIMLEDGER_LOG_LEVEL": "warning",
                "SCIMLEDGER_LOG_FORMAT": "json",
                "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
                "SCIMLEDGER_MAX_BODY_BYTES": str(limit),
                # No runner: projecting the members into analytics and seals would run beside the figures.
                "SCIMLEDGER_WORKER": "false",
            }
            print(f"{tree.label}: serving {tree.root}, provisioning {members:,} members", flush=True)
            await set_up(tree, env, members, spares=samples * 8)
            assert tree.service is not None
            stack.callback(stop, tree.service)
        # Both trees' members are listed in the same body shape; each tree gets its own ids.
        shapes = scenarios(limit, ["0" * 36] * members)
        probes = {tree.label: Probe(tree.service.base) for tree in trees if tree.service}
        results = {(shape.name, tree.label): Measured() for shape in shapes for tree in trees}
        for probe in probes.values():
            await stack.enter_async_context(probe.running())
        await asyncio.sleep(3)  # idle figures first
        for shape in shapes:
            print(f"{shape.name} ({len(shape.body):,} bytes)", flush=True)
            for _ in range(samples):
                for tree in trees:
                    measured = results[(shape.name, tree.label)]
                    if measured.timed_out:
                        continue
                    scenario = shape
                    if shape.target == "group":
                        scenario = Scenario(
                            shape.name,
                            shape.method,
                            _encoded(
                                _patch(
                                    {
                                        "op": "add",
                                        "path": "members",
                                        "value": [{"value": m} for m in tree.members],
                                    }
                                )
                            ),
                            "group",
                        )
                    await measure(tree, scenario, probes[tree.label], limit_seconds, measured)
                    # The group's members are added once; later turns re-add them, which changes nothing.
                    print(
                        f"  {tree.label}: {measured.seconds[-1]:.3f} s, status {measured.statuses[-1] or 'timeout'}",
                        flush=True,
                    )
        await asyncio.sleep(1)
    report(trees, shapes, results, probes, limit_seconds)


def report(
    trees: list[Tree],
    shapes: list[Scenario],
    results: dict[tuple[str, str], Measured],
    probes: dict[str, Probe],
    timeout: float,
) -> None:
    labels = [tree.label for tree in trees]
    print()
    print(
        "| scenario | bytes | "
        + " | ".join(f"{label}: median s (status) | {label}: /healthz p99 ms meanwhile" for label in labels)
        + " |"
    )
    print("|---|---|" + "---|---|" * len(labels))
    table = []
    for shape in shapes:
        cells = []
        for label in labels:
            measured = results[(shape.name, label)]
            median = _median(measured.seconds)
            if measured.timed_out:
                median = f"> {timeout:g} (timed out)"
            cells.append(f"{median} ({', '.join(sorted({str(s) for s in measured.statuses}))})")
            meanwhile = probes[label].by_scenario.get(shape.name, [])
            cells.append(f"{_p99(meanwhile)} (max {max(meanwhile, default=0):.1f}, {len(meanwhile)} probes)")
            table.append(
                {
                    "scenario": shape.name,
                    "bytes": len(shape.body),
                    "tree": label,
                    "seconds": measured.seconds,
                    "median_seconds": statistics.median(measured.seconds) if measured.seconds else None,
                    "statuses": measured.statuses,
                    "timed_out": measured.timed_out,
                    "healthz_ms_meanwhile": probes[label].by_scenario.get(shape.name, []),
                }
            )
        print(f"| {shape.name} | {len(shape.body):,} | " + " | ".join(cells) + " |")
    print()
    healthz = {}
    for label, probe in probes.items():
        healthz[label] = {
            "idle_p99_ms": percentile(probe.idle, 0.99) if probe.idle else None,
            "idle_median_ms": statistics.median(probe.idle) if probe.idle else None,
            "during_p99_ms": percentile(probe.during, 0.99) if probe.during else None,
            "during_median_ms": statistics.median(probe.during) if probe.during else None,
            "during_max_ms": max(probe.during) if probe.during else None,
            "samples": [len(probe.idle), len(probe.during)],
        }
        print(
            f"/healthz {label}: idle p99 {_p99(probe.idle)} ms (median {_median(probe.idle)}), during the large "
            f"requests p99 {_p99(probe.during)} ms (median {_median(probe.during)}, max "
            f"{max(probe.during) if probe.during else 0:.1f}; {len(probe.during)} probes)"
        )
    for tree in trees:
        if tree.service is not None:
            logged = errors_logged(tree.service)
            print(f"{tree.label}: {len(logged)} error lines logged (in {LOGS})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"scenarios": table, "healthz": healthz}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-tree", type=Path, help="a checkout with its own .venv to compare against")
    parser.add_argument("--samples", type=int, default=3, help="turns per scenario and tree (default 3)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds one request may take (default 30)"
    )
    parser.add_argument("--members", type=int, help="members to provision (default: as many as fit one body)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.baseline_tree, arguments.samples, arguments.timeout, arguments.members))
