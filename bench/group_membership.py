"""Does adding one member cost the same for a group of 10,000 as for an empty one?

Builds an org with two groups, fills one with 10,000 members, then times Okta's membership PATCH
(`add` of one member) against both groups, alternating between them so that the shared machine's noise
falls on both alike. Requests go through the real app (auth, parsing, the database) in-process.

    .venv/bin/python bench/group_membership.py [--members 10000] [--samples 300]

Uses DATABASE_URL if set, else the embedded server in SCIMLEDGER_DATA_DIR (./.data); works in a database
of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid

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
from scim.group_patch import GroupChange, MembershipStep

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
WARMUP_ROUNDS = 20  # warm caches and prepared statements; not timed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(members: int, samples: int) -> None:
    base_settings = Settings.from_env()
    server = await asyncio.to_thread(database_url, base_settings)
    async with scratch_database(server) as url:
        settings = Settings(
            database_url=url,
            token_cache_seconds=60,
            rate_limit_per_second=0,
            org_concurrency=1000,
            personal_data_keys=personal_data_keys(),
        )
        async with LifespanManager(create_app(settings)) as manager, contextlib.AsyncExitStack() as stack:
            # Set-up goes through the same services the app builds, on a pool of its own.
            pool = await create_pool(url, min_size=2, max_size=8, personal_data=personal_data())
            stack.push_async_callback(pool.close)
            services = build_services(settings, pool)
            stack.push_async_callback(services.notifier.aclose)
            async with services.pool.acquire() as connection:
                org = await tenancy.create_org(connection, "bench")
                _, token = await tenancy.issue_token(connection, org.org_id)
            meta = Metadata("admin:bench")
            await services.catalog.create(PROJECT, org.org_id, "Bench", meta)
            await services.catalog.create(ROLE, org.org_id, "Empty", meta)
            await services.catalog.create(ROLE, org.org_id, "Large", meta)
            groups = {
                row["display_name"]: row["group_id"]
                for row in await services.pool.fetch("SELECT display_name, group_id FROM scim_groups")
            }
            empty, large = groups["Statsig-Bench-Empty"], groups["Statsig-Bench-Large"]

            started = time.perf_counter()
            semaphore = asyncio.Semaphore(8)

            async def provision(index: int) -> uuid.UUID:
                async with semaphore:
                    row = await services.users.provision(
                        org.org_id, {"userName": f"user{index}@bench.example"}, meta
                    )
                    return row.user_id  # type: ignore[no-any-return]

            user_ids = await asyncio.gather(
                *(provision(index) for index in range(members + 2 * (samples + WARMUP_ROUNDS)))
            )
            provisioned = time.perf_counter() - started
            started = time.perf_counter()
            fill = GroupChange(
                steps=[MembershipStep("replace", tuple(str(user) for user in user_ids[:members]))]
            )
            await services.groups.change(org.org_id, large, fill, meta)
            filled = time.perf_counter() - started
            print(
                f"setup: {len(user_ids)} users provisioned in {provisioned:.1f} s; "
                f"{members} members pushed in one resync in {filled:.1f} s",
                flush=True,
            )

            spare = iter(user_ids[members:])
            timings: dict[str, list[float]] = {"empty": [], "large": []}
            transport = httpx.ASGITransport(app=manager.app)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench/scim/v2", headers=headers
            ) as client:
                for round_number in range(samples + WARMUP_ROUNDS):
                    for label, group_id in (("empty", empty), ("large", large)):
                        body = {
                            "schemas": [PATCH_OP],
                            "Operations": [
                                {"op": "add", "path": "members", "value": [{"value": str(next(spare))}]}
                            ],
                        }
                        begun = time.perf_counter()
                        response = await client.patch(f"/Groups/{group_id}", json=body)
                        elapsed = time.perf_counter() - begun
                        assert response.status_code == 204, response.text
                        if round_number >= WARMUP_ROUNDS:
                            timings[label].append(elapsed * 1000)
            sizes = await services.pool.fetch(
                "SELECT group_id, count(*) FROM group_members GROUP BY group_id"
            )
            size = {row[0]: row[1] for row in sizes}
        print(f"\nOne-member add (PATCH /Groups/{{id}}, {samples} samples each, alternating):")
        print(f"{'group':<28}{'median ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for label, group_id in (("empty", empty), ("large", large)):
            values = timings[label]
            start_size = 0 if label == "empty" else members
            print(
                f"{label + f' ({start_size}→{size[group_id]} members)':<28}"
                f"{statistics.median(values):>10.2f}{percentile(values, 0.9):>10.2f}"
                f"{percentile(values, 0.99):>10.2f}"
            )
        ratio = statistics.median(timings["large"]) / statistics.median(timings["empty"])
        print(f"ratio of medians, large / empty: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    arguments = parser.parse_args()
    os.environ.setdefault("SCIMLEDGER_LOG_LEVEL", "warning")
    asyncio.run(main(arguments.members, arguments.samples))
