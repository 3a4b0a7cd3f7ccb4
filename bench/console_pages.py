"""The console's pages under a large organization: p50 and p99 of each page's server time, side by side with
`GET /scim/v2/Users/{id}` measured in the same rounds.

An organization of USERS users and EVENTS events (generated through the domain as bench/replay_rebuild.py
does: 10 projects × 5 roles, each user provisioned, pushed into and out of groups, updated, deactivated and
reactivated), loaded with COPY, sealed, its SCIM projection rebuilt from the log as
`scimledger projections rebuild scim` does. Then, in process (httpx over ASGI: the app's own time, no
sockets), signed into the console with an admin session and an audit session, ROUNDS rounds: in each, every
page once and `GET /scim/v2/Users/{id}` once, in turns, so that the machine's drift touches all alike.

    .venv/bin/python bench/console_pages.py [--events 1000000] [--users 100000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from replay_rebuild import history  # beside this script
from scratch import copy_events, personal_data, personal_data_keys, scratch_database

from app.bootstrap import build_services
from app.http.app import create_app
from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.console import ConsoleAccess
from eventstore.pool import create_pool
from projections.seals import seal_pending

RESULTS = Path(__file__).resolve().parent / "results" / "console_pages.json"
ROOT = "http://console.bench"


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def seed(url: str, events: int, users: int) -> dict[str, str]:
    """The organization, loaded and projected; the ids and secrets the pages need."""
    pool = await create_pool(url, min_size=1, max_size=3, personal_data=personal_data())
    try:
        async with pool.acquire() as connection, pool.acquire() as reader:
            await migrate(connection)
            org = await tenancy.create_org(connection, "Bench console")
            started = time.perf_counter()
            rows = history(org.org_id, events, events_per_user=max(2, events // users))
            await copy_events(connection, rows)
            del rows
            await seal_pending(connection)
            services = build_services(
                Settings(database_url=url, worker=False, personal_data_keys=personal_data_keys()), pool
            )
            await services.projection.rebuild(connection, reader)
            await services.notifier.aclose()
            print(f"seeded {events:,} events in {time.perf_counter() - started:.0f} s", flush=True)
            _, scim = await tenancy.issue_token(connection, org.org_id, "scim", "bench")
            counts = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM scim_users WHERE org_id = $1) AS users, "
                "(SELECT count(*) FROM events WHERE org_id = $1) AS events",
                org.org_id,
            )
            user_id = await connection.fetchval(
                "SELECT user_id FROM scim_users WHERE org_id = $1 ORDER BY user_id LIMIT 1 OFFSET 5000",
                org.org_id,
            )
            group_id = await connection.fetchval(
                "SELECT group_id FROM access_grants WHERE org_id = $1 AND revoked_at IS NULL "
                "GROUP BY group_id ORDER BY count(*) DESC LIMIT 1",
                org.org_id,
            )
        console = ConsoleAccess(pool, 600, 3600, 3600)
        cookies = {}
        for intent in ("admin", "audit"):
            link = await console.issue_link(org.org_id, intent, "bench", "admin:bench")
            _, cookies[intent] = await console.sign_in(org.org_id, link.path.rsplit("/", 1)[1])
        print(f"organization: {counts['users']:,} users, {counts['events']:,} events", flush=True)
        return {
            "org_id": str(org.org_id),
            "scim": scim,
            "user_id": str(user_id),
            "group_id": str(group_id),
            "admin": cookies["admin"],
            "audit": cookies["audit"],
            # Every event of the bench is recorded at load time: an instant after them all, replayed whole.
            "year_ago": "2100-01-01T00:00",
        }
    finally:
        await pool.close()


def pages(ids: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, intent whose session asks, path): every page a person opens, with this organization's ids."""
    user, group = ids["user_id"], ids["group_id"]
    return [
        ("setup", "admin", "/console/setup"),
        ("users", "admin", "/console/users"),
        ("users, searched", "admin", "/console/users?user_name=user12345"),
        ("user", "admin", f"/console/users/{user}"),
        ("matrix", "admin", "/console/matrix"),
        ("group", "admin", f"/console/groups/{group}"),
        ("catalog", "admin", "/console/catalog"),
        ("webhooks", "admin", "/console/webhooks"),
        ("seals", "audit", "/console/audit"),
        ("history", "audit", "/console/audit/history"),
        ("review (90 days)", "audit", "/console/audit/review"),
        ("timeline (group)", "audit", f"/console/audit/timeline?group={group}"),
        ("timeline (user)", "audit", f"/console/audit/timeline?user={user}"),
        ("as of (after every event)", "audit", f"/console/audit/as-of?at={ids['year_ago']}"),
        ("group history", "admin", f"/console/groups/{group}/history"),
    ]


async def measure(url: str, ids: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    settings = Settings(
        database_url=url,
        worker=False,
        rate_limit_per_second=0,
        org_concurrency=100,
        personal_data_keys=personal_data_keys(),
    )
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        clients = {
            intent: httpx.AsyncClient(
                transport=transport, base_url=ROOT, cookies={"scimledger_console": ids[intent]}, timeout=120
            )
            for intent in ("admin", "audit")
        }
        scim = httpx.AsyncClient(
            transport=transport, base_url=ROOT, headers={"Authorization": f"Bearer {ids['scim']}"}
        )
        targets = [*pages(ids), ("GET /Users/{id} (baseline)", "scim", f"/scim/v2/Users/{ids['user_id']}")]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in targets}
        status: dict[str, int] = {}
        for round_ in range(rounds + 2):  # two rounds of warm-up, not counted
            for name, intent, path in targets:
                client = scim if intent == "scim" else clients[intent]
                started = time.perf_counter()
                answer = await client.get(path)
                elapsed = time.perf_counter() - started
                status[name] = answer.status_code
                if round_ >= 2:
                    samples[name].append(elapsed * 1000)
        for client in (*clients.values(), scim):
            await client.aclose()
    baseline = statistics.median(samples["GET /Users/{id} (baseline)"])
    print(f"\n{'page':<28}{'status':>7}{'p50 ms':>10}{'p99 ms':>10}{'p50 / GET':>11}")
    results = {}
    for name, _, path in targets:
        p50, p99 = statistics.median(samples[name]), percentile(samples[name], 0.99)
        results[name] = {
            "path": path,
            "status": status[name],
            "p50_ms": p50,
            "p99_ms": p99,
            "ratio": p50 / baseline,
        }
        print(f"{name:<28}{status[name]:>7}{p50:>10.1f}{p99:>10.1f}{p50 / baseline:>11.1f}", flush=True)
    return results


async def main(events: int, users: int, rounds: int) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    async with scratch_database(server) as url:
        ids = await seed(url, events, users)
        results = await measure(url, ids, rounds)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"events": events, "users": users, "rounds": rounds, "pages": results}, indent=2) + "\n"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.users, arguments.rounds))
