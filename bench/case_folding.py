"""What one folding (issue 18.4) costs Okta's hot paths: POST /Users and GET /Users?filter=userName eq.

userName uniqueness and `userName eq` now go through scim_fold (migration 0010) rather than lower(). The
service of each tree runs under uvicorn on 127.0.0.1 with a database of its own, and wrk drives the same
scenarios against each in turns (this machine's speed drifts over minutes), with ASCII userNames and
with userNames of Turkish and Greek letters, which take scim_fold's slower path. In the database alone, it
also times the lookup on the old index (lower) against the new (scim_fold), and the two functions, in
turns. Prints medians.

    .venv/bin/python bench/case_folding.py [--baseline-tree /work/base] [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app.infrastructure.database import database_url  # noqa: E402
from app.infrastructure.settings import Settings  # noqa: E402
from bench.load.run import Run, Server, errors_logged, free_port, write_lines, wrk  # noqa: E402
from bench.scratch import scratch_database, service_keys  # noqa: E402

# Turkish dotted and dotless i, and a final sigma: the letters lower() and Python disagreed on.
NON_ASCII = "İlker-Işık-ΣΟΦΙΑΣ"  # noqa: RUF001


@dataclass
class Tree:
    label: str
    path: Path
    server: Server | None = None
    token: str = ""
    org: str = ""

    def cli(self, env: dict[str, str], *args: str) -> str:
        return subprocess.run(
            [str(self.path / ".venv" / "bin" / "scimledger"), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()


def scenarios(tree: Tree, work: Path, seconds: int, turn: int) -> dict[str, Run]:
    assert tree.server is not None
    auth = {"BENCH_TOKEN": tree.token, "BENCH_PATH": "/scim/v2/Users"}
    runs = {}
    for kind, prefix in (("ASCII", "bench"), ("non-ASCII", NON_ASCII)):
        runs[f"POST /Users, {kind} userNames"] = wrk(
            tree.server.base, "post_users.lua", {**auth, "BENCH_RUN": f"{prefix}-{tree.label}{turn}"}, seconds
        )
    for kind in ("ASCII", "non-ASCII"):
        runs[f"GET /Users?filter=userName eq, {kind}"] = wrk(
            tree.server.base,
            "get_random.lua",
            {
                **auth,
                "BENCH_PATH": "/scim/v2/Users?filter={}",
                "BENCH_IDS": str(work / f"{tree.label}-{kind}"),
            },
            seconds,
        )
    return runs


async def prepare(tree: Tree, url: str, work: Path, env: dict[str, str]) -> None:
    """Migrate, create an org and a token, serve, and seed 2,000 users of each kind for the lookups."""
    env = {**env, **service_keys(), "DATABASE_URL": url}
    tree.cli(env, "migrate")
    tree.org = tree.cli(env, "org", "create", f"Bench {uuid.uuid4().hex[:6]}").splitlines()[-1]
    tree.token = tree.cli(env, "token", "issue", "--org", tree.org)
    port = free_port()
    command = [str(tree.path / ".venv" / "bin" / "scimledger"), "serve", "--port", str(port)]
    tree.server = Server(f"case-folding-{tree.label}", command, port, env, "/healthz")
    async with httpx.AsyncClient(
        base_url=tree.server.base + "/scim/v2", headers={"Authorization": f"Bearer {tree.token}"}
    ) as client:
        for kind, prefix in (("ASCII", "seed"), ("non-ASCII", NON_ASCII)):
            names = [f"{prefix}.{index}@Bench.Example" for index in range(2000)]
            for name in names:
                response = await client.post(
                    "/Users",
                    json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name},
                )
                assert response.status_code == 201, response.text
            # Searched as Okta would, with the spelling it was created with.
            write_lines(work, f"{tree.label}-{kind}", [quote(f'userName eq "{name}"') for name in names])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, help="a checkout of the code before, with its .venv")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    trees = [Tree("after", ROOT)]
    if args.baseline_tree is not None:
        trees.insert(0, Tree("before", args.baseline_tree.resolve()))
    env = {
        "SCIMLEDGER_LOG_LEVEL": "warning",
        "SCIMLEDGER_LOG_FORMAT": "json",
        "SCIMLEDGER_TOKEN_CACHE_SECONDS": "60",
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
    }
    env = {**os.environ, **env}
    env.pop("DATABASE_URL", None)
    server_url = await asyncio.to_thread(database_url, Settings.from_env())
    work = Path(tempfile.mkdtemp(prefix="scimledger-bench-fold-"))
    results: dict[tuple[str, str], list[Run]] = {}
    sql_lines: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        for tree in trees:
            url = await stack.enter_async_context(scratch_database(server_url))
            await prepare(tree, url, work, env)
            if tree.label == "after":
                sql_lines += await lookups_in_sql(url, args.rounds)
                sql_lines += await folding_in_sql(url, args.rounds)
            assert tree.server is not None
            stack.callback(tree.server.stop)
            print(f"{tree.label}: {tree.path} serving on {tree.server.base}", flush=True)
        for tree in trees:
            scenarios(tree, work, 2, -1)  # warm-up: statements prepared and planned on each connection
        for turn in range(args.rounds):
            for tree in trees:
                for scenario, run in scenarios(tree, work, args.seconds, turn).items():
                    results.setdefault((scenario, tree.label), []).append(run)
                    print(
                        f"  turn {turn} {tree.label}: {scenario}: {run[0]:,.0f}/s p99 {run[2]:.1f} ms",
                        flush=True,
                    )
        for tree in trees:
            assert tree.server is not None
            errors = errors_logged(tree.server)
            if errors:
                print(f"{tree.label}: {len(errors)} errors logged, first: {errors[0]}")
            lookups = await check_lookups(tree)
            print(f"{tree.label}: {lookups}")
    print(f"\nmedians of {args.rounds} turns of {args.seconds} s (wrk -t2 -c32), req/s and p99 ms")
    for scenario in dict.fromkeys(scenario for scenario, _ in results):
        cells = []
        for tree in trees:
            runs = results[(scenario, tree.label)]
            rps = statistics.median(run[0] for run in runs)
            p99 = statistics.median(run[2] for run in runs)
            errors = sum(run[3] for run in runs)
            cells.append(f"{tree.label} {rps:,.0f}/s p99 {p99:.1f} ms ({errors} non-2xx)")
        print(f"{scenario}: " + "; ".join(cells))
    print("\n".join(sql_lines))


async def lookups_in_sql(url: str, rounds: int) -> list[str]:
    """`userName eq`'s lookup timed in the database alone, since HTTP on this shared machine varies by a factor of
    three from one turn to the next: the same 20,000 userNames in two tables, one with the old unique index
    on lower(), one with the new on scim_fold(), looked up in alternating turns by prepared statements."""
    connection = await asyncpg.connect(url)
    timings: dict[tuple[str, str], list[float]] = {}
    org_id = uuid.uuid4()
    try:
        for function in ("lower", "scim_fold"):
            await connection.execute(
                f"CREATE TEMPORARY TABLE by_{function} (org_id uuid, user_id uuid, user_name text);"
                f"CREATE UNIQUE INDEX ON by_{function} (org_id, {function}(user_name))"
            )
        names = {
            kind: [f"{prefix}.{index}@Bench.Example" for index in range(10_000)]
            for kind, prefix in (("ASCII", "bench.user"), ("non-ASCII", NON_ASCII))
        }
        for function in ("lower", "scim_fold"):
            await connection.execute(
                f"INSERT INTO by_{function} SELECT $1, gen_random_uuid(), name FROM unnest($2::text[]) AS n(name)",
                org_id,
                [name for kind in names for name in names[kind]],
            )
            await connection.execute(f"ANALYZE by_{function}")
        for _ in range(rounds):
            for kind, kind_names in names.items():
                for function in ("lower", "scim_fold"):
                    statement = await connection.prepare(
                        f"SELECT user_id FROM by_{function} WHERE org_id = $1 AND {function}(user_name) = $2"
                    )
                    keys = await connection.fetch(
                        f"SELECT {function}(name) FROM unnest($1::text[]) AS n(name)", kind_names[::5]
                    )
                    assert await statement.fetchval(org_id, keys[0][0]) is not None, "the lookup finds no one"
                    began = time.perf_counter()
                    for key in keys:
                        await statement.fetchval(org_id, key[0])
                    timings.setdefault((kind, function), []).append((time.perf_counter() - began) / len(keys))
    finally:
        await connection.close()
    return [
        f"userName eq, {kind}, one prepared lookup on the index of {function}(): "
        f"{statistics.median(values) * 1e6:.0f} µs (median, round trip included)"
        for (kind, function), values in timings.items()
    ]


async def folding_in_sql(url: str, rounds: int) -> list[str]:
    """The database's own cost, without HTTP: scim_fold against lower() over 100,000 userNames of each kind,
    as index maintenance, a rebuild and filters on attributes without an index pay it."""
    lines = []
    connection = await asyncpg.connect(url)
    try:
        for kind, prefix in (("ASCII", "bench.user"), ("non-ASCII", NON_ASCII)):
            names = [f"{prefix}.{index}@Bench.Example" for index in range(100_000)]
            for function in ("lower", "scim_fold"):
                timings = []
                for _ in range(rounds):
                    began = time.perf_counter()
                    await connection.fetchval(
                        f"SELECT count(DISTINCT {function}(name)) FROM unnest($1::text[]) AS n(name)", names
                    )
                    timings.append(time.perf_counter() - began)
                per_name = statistics.median(timings) / len(names) * 1e6
                lines.append(f"{function}() of a {kind} userName, in SQL: {per_name:.2f} µs (median)")
    finally:
        await connection.close()
    return lines


async def check_lookups(tree: Tree) -> str:
    """Whether each tree's lookups found the users (before: lower() missed the non-ASCII ones)."""
    assert tree.server is not None
    name = f"{NON_ASCII}.7@Bench.Example"
    async with httpx.AsyncClient(base_url=tree.server.base + "/scim/v2") as client:
        response = await client.get(
            "/Users",
            params={"filter": f'userName eq "{name}"'},
            headers={"Authorization": f"Bearer {tree.token}"},
        )
    return f"userName eq {name!r} finds {response.json()['totalResults']} user(s)"


if __name__ == "__main__":
    asyncio.run(main())
