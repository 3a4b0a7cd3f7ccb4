"""The access check on the host app's hot path, as a ratio to one bare indexed SELECT measured in the same run.

An organization with USERS users, each granted some of its Project × Role pairs through Okta's pushes, a
share of the grants revoked and granted again (so that the check reads a history, not one row a key). Then,
in turns (this machine's speed drifts; a ratio holds only between runs next to each other in time):

- over HTTP, as `make bench` measures its reads: wrk (2 threads, 32 connections) against
  `GET /api/v1/orgs/{org}/access` of `scimledger serve` (an admin token naming its organization by id, ids
  for the user, project and role), in turns with wrk against the bare Starlette + asyncpg app's one indexed
  SELECT (`make bench`'s baseline (b), same script, same table size);
  `GET /scim/v2/Users/{id}` runs in the same turns: the service's own one-row read behind the same edge
  (its token, middleware, admission), whose ratio to the baseline shows what the edge costs any read;
- in process: CONCURRENCY tasks calling `AccessService.check` by ids, against as many tasks sending the
  bare baseline's SELECT (bench/load/baseline_app.py's, on a table of the same shape and size) on the same
  pool: what the service adds to the one indexed read, without HTTP.

Prints medians and each turn's ratio, and writes bench/results/access_check.json. The target is a ratio of
0.8 or more.

    make bench-access   (or: DATABASE_URL=... .venv/bin/python bench/access_check.py)
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncpg

from app.bootstrap import build_services
from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.catalog import group_id_for
from eventstore.pool import create_pool
from eventstore.records import Metadata
from scim.group_patch import GroupChange, MembershipStep

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scratch import load_env, personal_data, personal_data_keys, scratch_database

from bench.load import run as load
from bench.load.baseline_app import SCHEMA as BASELINE_SCHEMA

RESULTS = Path(__file__).resolve().parent / "results" / "access_check.json"
USERS, PROJECTS, ROLES = 2_000, 4, 2
CONCURRENCY = 32
ROUNDS, SECONDS = 5, 3.0
OKTA = Metadata("token:bench", request_id="bench")
ADMIN = Metadata("admin:bench")
BASELINE_ORG = uuid.UUID(int=1)
BASELINE_ROWS = 20_000
_BASELINE_SELECT = (
    "SELECT position, stream_id, payload FROM baseline_events WHERE org_id = $1 AND stream_id = $2 "
    "AND version = 1"
)

Triple = tuple[uuid.UUID, uuid.UUID, uuid.UUID]


async def seed(services: Services, pool: asyncpg.Pool[asyncpg.Record]) -> tuple[uuid.UUID, list[Triple]]:
    """The organization, its grants and their history; returns the (user, project, role) triples to ask."""
    async with pool.acquire() as connection:
        org_id = (await tenancy.create_org(connection, "Bench access")).org_id
    projects = [(await services.catalog.create(PROJECT, org_id, f"P{n}", ADMIN))[0] for n in range(PROJECTS)]
    roles = [(await services.catalog.create(ROLE, org_id, f"R{n}", ADMIN))[0] for n in range(ROLES)]
    users = [
        (await services.users.provision(org_id, {"userName": f"u{n}@bench.example"}, OKTA)).user_id
        for n in range(USERS)
    ]
    chance = random.Random(21)
    for project_id in projects:
        for role_id in roles:
            group_id = group_id_for(project_id, role_id)
            members = [str(user) for user in users if chance.random() < 0.4]
            await services.groups.change(
                org_id, group_id, GroupChange([MembershipStep("add", tuple(members))]), OKTA
            )
            churned = tuple(chance.sample(members, len(members) // 5))
            for kind in ("remove", "add", "remove", "add"):
                await services.groups.change(
                    org_id, group_id, GroupChange([MembershipStep(kind, churned)]), OKTA
                )  # type: ignore[arg-type]
    await pool.execute(BASELINE_SCHEMA)
    await pool.execute(
        "INSERT INTO baseline_events (org_id, stream_id, version, type, payload) "
        "SELECT $1, ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid, 1, 'UserProvisioned', '{}' "
        "FROM generate_series(1, $2::int) AS n ON CONFLICT DO NOTHING",
        BASELINE_ORG,
        BASELINE_ROWS,
    )
    await pool.execute("VACUUM (ANALYZE) access_grants, baseline_events")
    triples = [(user, chance.choice(projects), chance.choice(roles)) for user in users for _ in range(4)]
    return org_id, triples


async def throughput(call: Callable[[int], Awaitable[Any]], seconds: float) -> float:
    """Calls/s of CONCURRENCY tasks each calling `call(n)` in a loop for `seconds`."""
    deadline = time.perf_counter() + seconds
    counts = [0] * CONCURRENCY

    async def worker(index: int) -> None:
        n = index
        while time.perf_counter() < deadline:
            await call(n)
            n += CONCURRENCY
            counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(index) for index in range(CONCURRENCY)))
    return sum(counts) / (time.perf_counter() - started)


async def in_process(
    services: Services, pool: asyncpg.Pool[asyncpg.Record], org_id: uuid.UUID, triples: list[Triple]
) -> dict[str, Any]:
    allowed = sum([(await services.access.check(org_id, *triple)).allowed for triple in triples[:2000]])

    async def check(n: int) -> None:
        await services.access.check(org_id, *triples[n % len(triples)])

    async def bare_select(n: int) -> None:
        await pool.fetchrow(_BASELINE_SELECT, BASELINE_ORG, uuid.UUID(int=n % BASELINE_ROWS + 1))

    await throughput(check, 1.0)  # warm-up: statements prepared on every pooled connection
    await throughput(bare_select, 1.0)
    checks, selects = [], []
    for _ in range(ROUNDS):
        selects.append(await throughput(bare_select, SECONDS))
        checks.append(await throughput(check, SECONDS))
    ratios = [check / select for check, select in zip(checks, selects, strict=True)]
    return {
        "scenario": "access check by ids, in process (AccessService.check)",
        "baseline": "one bare indexed SELECT, in process, same pool",
        "calls_per_s": round(statistics.median(checks)),
        "baseline_per_s": round(statistics.median(selects)),
        "ratio": round(statistics.median(ratios), 2),
        "turn_ratios": [round(ratio, 2) for ratio in ratios],
        "allowed_share": round(allowed / 2000, 2),
    }


def over_http(
    url: str, org_id: uuid.UUID, admin_token: str, scim_token: str, triples: list[Triple]
) -> list[dict[str, Any]]:
    """The route under `scimledger serve` against the bare app's indexed SELECT, in turns (as `load.paired`
    runs them); and, in the same turns, `GET /scim/v2/Users/{id}`, the service's own one-row read behind the
    same edge, to tell the route's cost from the edge's."""
    work = Path(tempfile.mkdtemp(prefix="scimledger-bench-access-"))
    load.write_lines(work, "numbers", [str(n) for n in range(1, BASELINE_ROWS + 1)])
    asked = load.write_lines(
        work, "access", [f"user={user}&project={project}&role={role}" for user, project, role in triples]
    )
    user_ids = load.write_lines(work, "users", sorted({str(user) for user, _, _ in triples}))
    env = load_env(url)
    baseline = load.start_baseline("baseline-access", env)
    port = load.free_port()
    # No runner: the log the seeding wrote would be worked off during the turns, and timed with them.
    command = [load.CLI, "serve", "--no-worker", "--port", str(port)]
    service = load.Server("scimledger-access", command, port, env, "/healthz")

    def access(seconds: int) -> load.Run:
        path = f"/api/v1/orgs/{org_id}/access?{{}}"
        environment = {"BENCH_TOKEN": admin_token, "BENCH_PATH": path, "BENCH_IDS": asked}
        return load.wrk(service.base, "get_random.lua", environment, seconds)

    def get_user(seconds: int) -> load.Run:
        environment = {"BENCH_TOKEN": scim_token, "BENCH_PATH": "/scim/v2/Users/{}", "BENCH_IDS": user_ids}
        return load.wrk(service.base, "get_random.lua", environment, seconds)

    try:
        access(load.WARM_UP_SECONDS)
        get_user(load.WARM_UP_SECONDS)
        runs: list[load.Run] = []
        users: list[load.Run] = []
        baseline_runs: list[load.Run] = []
        for _ in range(load.PAIRED_ROUNDS):
            baseline_runs.append(load.baseline_select(baseline, work, load.PAIRED_SECONDS))
            runs.append(access(load.PAIRED_SECONDS))
            users.append(get_user(load.PAIRED_SECONDS))
        errors = load.errors_logged(service)
    finally:
        service.stop()
        baseline.stop()
        shutil.rmtree(work, ignore_errors=True)
    select = "(b) baseline: one indexed SELECT, bare Starlette + asyncpg"
    result = load.paired_result(
        "GET /api/v1/orgs/{org}/access by ids (admin token)", runs, baseline_runs, select, {}
    )
    reference = load.paired_result(
        "GET /scim/v2/Users/{id}, in the same turns", users, baseline_runs, select, {}
    )
    to_reference = [run[0] / user[0] for run, user in zip(runs, users, strict=True)]
    return [
        {
            **asdict(result),
            "ratio_to_get_user": round(statistics.median(to_reference), 2),
            "service_errors_logged": len(errors),
        },
        asdict(reference),
    ]


async def main() -> None:
    settings = Settings.from_env()
    server = await asyncio.to_thread(database_url, settings)
    async with scratch_database(server) as url:
        pool = await create_pool(url, min_size=4, max_size=10, personal_data=personal_data())
        try:
            async with pool.acquire() as connection:
                await migrate(connection)
            services = build_services(
                Settings(database_url=url, personal_data_keys=personal_data_keys()), pool
            )
            started = time.perf_counter()
            org_id, triples = await seed(services, pool)
            grants = await pool.fetchval("SELECT count(*) FROM access_grants WHERE org_id = $1", org_id)
            print(
                f"seeded {grants:,} grants of {USERS:,} users in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            async with pool.acquire() as connection:
                _, admin_token = await tenancy.issue_token(connection, org_id, "admin")
                _, scim_token = await tenancy.issue_token(connection, org_id, "scim")
            results = [
                *await asyncio.to_thread(over_http, url, org_id, admin_token, scim_token, triples),
                await in_process(services, pool, org_id, triples),
            ]
            await services.notifier.aclose()
        finally:
            await pool.close()
    for result in results:
        print(json.dumps(result), flush=True)
    RESULTS.write_text(
        json.dumps(
            {"measured_at": datetime.datetime.now(datetime.UTC).isoformat(), "results": results}, indent=2
        )
        + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
