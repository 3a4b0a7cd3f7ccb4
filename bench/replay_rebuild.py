"""Replay to an instant, and rebuild of the analytics projections, over 1,000,000 events.

Generates an organization's history through the domain itself (users provisioned, profiles updated,
pushed into and out of Project × Role groups, deactivated and reactivated), loads it with COPY, then times:
- the baseline: reading and decoding every event, the ceiling of anything that replays the log;
- `audit as-of` replay of the whole history through the domain;
- a rebuild of analytics.access and of analytics.provisioning_activity, in place and beside the live rows.

    .venv/bin/python bench/replay_rebuild.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import random
import time
import uuid

from scratch import copy_events, event_rows, scratch_database  # beside this script

from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from domain.catalog import Group, Project, Role
from domain.users import User
from eventstore.pool import create_pool
from eventstore.rebuilds import rebuild, rebuild_beside
from eventstore.records import EVENT_COLUMNS, PayloadSeal, RecordedEvent
from projections import audit
from projections.activity import ProvisioningActivity
from projections.analytics import AnalyticsAccess

EVENTS_PER_USER = 20


def history(
    org_id: uuid.UUID, events: int, events_per_user: int = EVENTS_PER_USER, seal: PayloadSeal | None = None
) -> list[tuple[object, ...]]:
    """Rows for the events table: a catalog of 10 projects x 5 roles, then users of about `events_per_user`
    events each (their personal values encrypted by `seal`, if given)."""
    chooser = random.Random(42)
    org = str(org_id)
    aggregates: list[object] = []
    projects = [Project(org_id=org, name=f"Project {index}") for index in range(10)]
    roles = [Role(org_id=org, name=f"Role {index}") for index in range(5)]
    groups = [Group(org_id=org, project_id=str(p.id), role_id=str(r.id)) for p in projects for r in roles]
    aggregates += [*projects, *roles, *groups]
    rows: list[tuple[object, ...]] = []

    for aggregate in aggregates:
        rows += event_rows(org_id, aggregate)
    index = 0
    while len(rows) < events:
        user = User(
            org_id=org,
            attributes={
                "userName": f"user{index}@bench.example",
                "title": "Engineer",
                "emails": [{"value": f"user{index}@bench.example", "primary": True}],
            },
            active=True,
        )
        for step in range(events_per_user - 1):
            roll = chooser.random()
            group = str(chooser.choice(groups).id)
            if roll < 0.45:
                user.join_group(group, "push")
            elif roll < 0.7 and user.groups:
                user.leave_group(chooser.choice(sorted(user.groups)), "push")
            elif roll < 0.9:
                user.replace({**user.attributes, "title": f"Title {step}"}, None)
            else:
                user.set_active(not user.active)
                if not user.active:
                    user.set_active(True)
        rows += event_rows(org_id, user, seal)
        index += 1
    return rows


async def timed(label: str, events: int, work: object, baseline: float | None) -> float:
    started = time.perf_counter()
    await work  # type: ignore[misc]
    seconds = time.perf_counter() - started
    rate = events / seconds
    ratio = f"{rate / baseline:.2f}" if baseline else "1.00"
    print(f"{label:<52}{seconds:>9.1f}{rate:>14,.0f}{ratio:>10}", flush=True)
    return rate


async def main(count: int) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    async with scratch_database(server) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as connection:
                await migrate(connection)
                org_id = uuid.uuid4()
                started = time.perf_counter()
                rows = history(org_id, count)
                generated = time.perf_counter() - started
                started = time.perf_counter()
                await copy_events(connection, rows)
                loaded = time.perf_counter() - started
                total = len(rows)
                del rows
                await connection.execute("ANALYZE events")
                print(
                    f"{total:,} events generated through the domain in {generated:.1f} s, loaded with COPY in "
                    f"{loaded:.1f} s\n"
                )
                print(f"{'scenario':<52}{'seconds':>9}{'events/s':>14}{'ratio':>10}")

                async def read_and_decode() -> None:
                    async with connection.transaction():
                        async for row in connection.cursor(
                            f"SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 ORDER BY tx, position",
                            org_id,
                            prefetch=5000,
                        ):
                            RecordedEvent(*row).to_domain_event()

                async def replay() -> None:
                    async with connection.transaction(isolation="repeatable_read"):
                        await audit.as_of(connection, org_id, datetime.datetime.now(datetime.UTC), "Statsig")

                baseline = await timed(
                    "baseline: read and decode every event", total, read_and_decode(), None
                )
                await timed("audit as-of: replay through the domain", total, replay(), baseline)
                await timed(
                    "rebuild analytics.access (in place)",
                    total,
                    rebuild(connection, AnalyticsAccess()),
                    baseline,
                )
                await timed(
                    "rebuild analytics.provisioning_activity (in place)",
                    total,
                    rebuild(connection, ProvisioningActivity()),
                    baseline,
                )
                await timed(
                    "rebuild analytics.access (beside, then swap)",
                    total,
                    rebuild_beside(connection, AnalyticsAccess()),
                    baseline,
                )
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().events))
