"""Reactor lag: from an Okta deactivation's commit to the user's group memberships being gone.

Each of 500 users is in two groups. Okta's deactivation PATCHes go through the real app, whose lifespan runs
the runner in-process, as `serve` does. For every user the lag is the time between the UserDeactivated event
and the reactor's last GroupMemberRemoved, both stamped with clock_timestamp() by the database when
inserted, a few milliseconds before each commit.

Two load shapes: paced (one deactivation every 20 ms, the steady state) and burst (all 500 at once from
8 concurrent clients, which the reactor then catches up on).

    .venv/bin/python bench/reactor_lag.py [--users 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from scratch import personal_data, personal_data_keys, scratch_database  # beside this script

from app.bootstrap import build_services
from app.http.app import create_app
from app.infrastructure.database import database_url
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from eventstore.pool import create_pool
from eventstore.records import Metadata

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def lags(pool: asyncpg.Pool, org_id: uuid.UUID) -> list[float]:
    rows = await pool.fetch(
        "SELECT extract(epoch FROM max(removed.recorded_at) - deactivated.recorded_at) * 1000 AS lag_ms "
        "FROM events AS deactivated JOIN events AS removed "
        "ON removed.org_id = deactivated.org_id AND removed.stream_id = deactivated.stream_id "
        "AND removed.type = 'GroupMemberRemoved' AND removed.payload->>'cause' = 'reactor' "
        "WHERE deactivated.org_id = $1 AND deactivated.type = 'UserDeactivated' "
        "GROUP BY deactivated.stream_id, deactivated.recorded_at",
        org_id,
    )
    return [float(row["lag_ms"]) for row in rows]


async def scenario(label: str, users: int, pace: float | None, server: str) -> None:
    async with scratch_database(server) as url:
        settings = Settings(
            database_url=url,
            token_cache_seconds=60,
            runner_poll_seconds=1.0,
            rate_limit_per_second=0,
            org_concurrency=1000,  # one organization's 8 clients at once
            personal_data_keys=personal_data_keys(),
        )
        async with LifespanManager(create_app(settings)) as manager:
            pool = await create_pool(url, min_size=2, max_size=8, personal_data=personal_data())
            services = build_services(settings, pool)
            try:
                async with pool.acquire() as connection:
                    org = await tenancy.create_org(connection, "bench")
                    _, token = await tenancy.issue_token(connection, org.org_id)
                meta = Metadata("admin:bench")
                await services.catalog.create(PROJECT, org.org_id, "Bench", meta)
                await services.catalog.create(ROLE, org.org_id, "Admin", meta)
                await services.catalog.create(ROLE, org.org_id, "Viewer", meta)
                transport = httpx.ASGITransport(app=manager.app)
                headers = {"Authorization": f"Bearer {token}"}
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench/scim/v2", headers=headers
                ) as client:
                    ids = []
                    for index in range(users):
                        body = {"userName": f"user{index}@bench.example", "active": True}
                        ids.append((await client.post("/Users", json=body)).json()["id"])
                    for group in (await client.get("/Groups")).json()["Resources"]:
                        for start in range(0, users, 100):
                            value = [{"value": user_id} for user_id in ids[start : start + 100]]
                            add = {"op": "add", "path": "members", "value": value}
                            await client.patch(
                                f"/Groups/{group['id']}", json={"schemas": [PATCH_OP], "Operations": [add]}
                            )
                    await asyncio.sleep(2)  # let the runner finish with the set-up's events
                    deactivate = {
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": "replace", "value": {"active": False}}],
                    }
                    started = time.perf_counter()
                    if pace is not None:
                        for user_id in ids:
                            await client.patch(f"/Users/{user_id}", json=deactivate)
                            await asyncio.sleep(pace)
                    else:
                        semaphore = asyncio.Semaphore(8)

                        async def one(user_id: str) -> None:
                            async with semaphore:
                                await client.patch(f"/Users/{user_id}", json=deactivate)

                        await asyncio.gather(*(one(user_id) for user_id in ids))
                    sent = time.perf_counter() - started
                deadline = time.monotonic() + 60
                while await pool.fetchval("SELECT count(*) FROM group_members") > 0:
                    assert time.monotonic() < deadline, "the reactor did not finish within 60 s"
                    await asyncio.sleep(0.05)
                measured = await lags(pool, org.org_id)
            finally:
                await services.notifier.aclose()
                await pool.close()
        assert len(measured) == users
        print(
            f"{label:<34}{users:>6}{sent:>9.1f}{statistics.median(measured):>10.1f}"
            f"{percentile(measured, 0.99):>10.1f}{max(measured):>10.1f}",
            flush=True,
        )


async def main(users: int) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    print(f"{'scenario':<34}{'users':>6}{'sent s':>9}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    await scenario("paced (one per 20 ms)", users, 0.02, server)
    await scenario("burst (8 concurrent clients)", users, None, server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    asyncio.run(main(parser.parse_args().users))
