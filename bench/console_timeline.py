"""The console's access timeline: server time to read and draw a group of 10,000 members over a year, on an
organization whose log holds about 1,000,000 events (issue 22's budget: under a second).

Seeds straight into the tables, as bench/event_feed.py does: a year of Okta's pushes into one group of
MEMBERS users (joins, leaves, re-joins; some members deleted since) and into the organization's other
groups, the users' provisioning, the groups' creation, then filler profile updates until the log holds
EVENTS events, all with COPY or one INSERT ... SELECT. access_grants is then filled from the log by the
backfills of migrations 0019 and 0023 (the SQL that computes the audit's intervals), scim_users and the
catalog by COPY. Then times, RUNS times each, in turns:
- the group's timeline over the year: the first page (PAGE_SIZE bars, read by
  projections.access_timeline.read_timeline) and its SVG (app.http.console.timeline_svg.render_timeline);
- the same for every page of the group (the whole year of the group);
- one user's timeline over the year (their Project × Role pairs).
Prints a row per scenario (median and p99 of read, render, both, and the CPU time of both in this process and
its PostgreSQL backend, in ms),
the machine's load average around the runs, and the index each statement reads by (EXPLAIN); writes
bench/results/console_timeline.json.

    make bench-console-timeline   (or: .venv/bin/python bench/console_timeline.py [--runs 20])
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import random
import statistics
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from scratch import scratch_database  # beside this script

from app.http.console.timeline_svg import render_timeline
from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.access import _AT as ACCESS_CHECK_AT
from domain.catalog import group_id_for
from eventstore.pool import create_pool
from projections import access_timeline
from projections.access_timeline import TimelineBar, read_timeline

RESULTS = Path(__file__).resolve().parent / "results" / "console_timeline.json"
MEMBERS = 10_000
OTHER_USERS = 40_000
PROJECTS, ROLES = 10, 5
EVENTS = 1_000_000
DELETED_SHARE = 0.02
YEAR = datetime.timedelta(days=365)
ACTOR = "token:bench"
_COLUMNS = ["org_id", "stream_id", "version", "type", "payload", "occurred_at", "recorded_at", "actor"]

Event = tuple[datetime.datetime, uuid.UUID, str, dict[str, Any]]
Sample = tuple[float, float, float, int, int]


def membership(
    chance: random.Random, user: uuid.UUID, group: uuid.UUID, start: datetime.datetime
) -> list[Event]:
    """A member's year in a group: a join (some before the window), maybe a leave, maybe a re-join."""
    added = {"group_id": str(group), "cause": "push"}
    at = start + datetime.timedelta(days=chance.uniform(-90, 330))
    events: list[Event] = [(at, user, "GroupMemberAdded", added)]
    while chance.random() < 0.35:
        at += datetime.timedelta(days=chance.uniform(1, 150))
        events.append((at, user, "GroupMemberRemoved", added))
        if chance.random() >= 0.6:
            break
        at += datetime.timedelta(days=chance.uniform(1, 60))
        events.append((at, user, "GroupMemberAdded", added))
    return events


def history(org_id: uuid.UUID, start: datetime.datetime) -> tuple[list[Event], dict[str, Any]]:
    """The log's meaningful events (in time order after sorting) and what the timings ask about."""
    chance = random.Random(22)
    projects = [uuid.uuid4() for _ in range(PROJECTS)]
    roles = [uuid.uuid4() for _ in range(ROLES)]
    pairs = [(project, role) for project in projects for role in roles]
    groups = [group_id_for(project, role) for project, role in pairs]
    founded = start - datetime.timedelta(days=200)
    events: list[Event] = [
        (founded, group, "GroupCreated", {"org_id": str(org_id), "project_id": str(p), "role_id": str(r)})
        for group, (p, r) in zip(groups, pairs, strict=True)
    ]
    users = [uuid.uuid4() for _ in range(MEMBERS + OTHER_USERS)]
    names = {user: f"user{index:05d}@bench.example" for index, user in enumerate(users)}
    for user in users:
        attributes = {"userName": names[user], "title": "Engineer"}
        created = founded + datetime.timedelta(minutes=chance.uniform(1, 10_000))
        events.append(
            (
                created,
                user,
                "UserProvisioned",
                {"org_id": str(org_id), "attributes": attributes, "active": True},
            )
        )
    group, members = groups[0], users[:MEMBERS]
    deleted = set(chance.sample(members, int(MEMBERS * DELETED_SHARE)))
    for user in members:
        mine = membership(chance, user, group, start)
        if user in deleted:
            if mine[-1][2] == "GroupMemberAdded":
                mine.append(
                    (mine[-1][0] + datetime.timedelta(days=1), user, "GroupMemberRemoved", mine[0][3])
                )
            events.append((mine[-1][0] + datetime.timedelta(hours=1), user, "UserDeleted", {}))
        events += mine
    for user in users[MEMBERS:]:
        for other in chance.sample(groups[1:], 5):
            events += membership(chance, user, other, start)
    # One user holding many pairs over the year: the user's view.
    subject = uuid.uuid4()
    users.append(subject)
    names[subject] = "many.pairs@bench.example"
    events.append(
        (
            founded,
            subject,
            "UserProvisioned",
            {"org_id": str(org_id), "attributes": {"userName": names[subject]}, "active": True},
        )
    )
    for other in groups[1:41]:
        events += membership(chance, subject, other, start)
    # Nothing recorded after now (the window's end): a leave drawn past it leaves the grant open.
    now = start + YEAR
    events = sorted((event for event in events if event[0] <= now), key=lambda event: event[0])
    catalog = {"projects": projects, "roles": roles, "names": names, "deleted": deleted}
    return events, {"group": group, "user": subject, "users": users, **catalog}


async def seed(
    pool: asyncpg.Pool[asyncpg.Record], org_id: uuid.UUID, start: datetime.datetime
) -> dict[str, Any]:
    events, seeded = history(org_id, start)
    versions: dict[uuid.UUID, int] = {}
    rows = []
    encode = msgspec.json.encode
    for at, stream, kind, payload in events:
        # A stream whose events fall at the same instant keeps them in the order generated.
        versions[stream] = versions.get(stream, 0) + 1
        if kind in ("GroupMemberAdded", "GroupMemberRemoved") and versions[stream] == 1:
            raise AssertionError("a membership before the user's provisioning")
        rows.append((org_id, stream, versions[stream], kind, encode(payload), at, at, ACTOR))
    for offset in range(0, len(rows), 50_000):
        await pool.copy_records_to_table("events", records=rows[offset : offset + 50_000], columns=_COLUMNS)
    meaningful = len(rows)
    # Filler: profile updates of every user, spread over the year, until the log holds EVENTS events. Their
    # versions follow each stream's last (a gap-free stream is not what any reader here relies on).
    users: list[uuid.UUID] = seeded["users"]
    last = [versions[user] for user in users]
    await pool.execute(
        """INSERT INTO events (org_id, stream_id, version, type, payload, occurred_at, recorded_at, actor)
           SELECT $1, users[1 + n % $3], last[1 + n % $3] + 1 + n / $3, 'UserProfileUpdated',
                  '{"changed": {"title": "Engineer"}, "removed": []}',
                  $4::timestamptz + (n % 525600) * interval '1 minute',
                  $4::timestamptz + (n % 525600) * interval '1 minute', $5
           FROM generate_series(0, $2 - 1) AS n, (SELECT $6::uuid[] AS users, $7::int[] AS last) AS streams""",
        org_id,
        EVENTS - meaningful,
        len(users),
        start,
        ACTOR,
        users,
        last,
    )
    for name in ("0019_access_grants.sql", "0023_access_grants_revoked_position.sql"):
        sql = (resources.files("migrations") / name).read_text()
        await pool.execute(sql[sql.index("-- backfill:") :])
    names: dict[uuid.UUID, str] = seeded["names"]
    await pool.copy_records_to_table(
        "scim_users",
        records=[
            (org_id, user, names[user], None, True, b'{"schemas": []}', 1, start, start, index)
            for index, user in enumerate(users)
            if user not in seeded["deleted"]
        ],
        columns=[
            "org_id",
            "user_id",
            "user_name",
            "external_id",
            "active",
            "resource",
            "version",
            "created",
            "last_modified",
            "sort_key",
        ],
    )
    for table, column, ids, prefix in (
        ("catalog_projects", "project_id", seeded["projects"], "Project"),
        ("catalog_roles", "role_id", seeded["roles"], "Role"),
    ):
        await pool.copy_records_to_table(
            table,
            records=[(org_id, entity, f"{prefix} {index}", False, start) for index, entity in enumerate(ids)],
            columns=["org_id", column, "name", "archived", "created"],
        )
    await pool.execute("VACUUM (ANALYZE) events, access_grants, scim_users, catalog_projects, catalog_roles")
    return seeded


def link(bar: TimelineBar) -> str:
    return f"/console/audit/events?from={bar.granted_position}&to={bar.revoked_position or ''}"


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)]


def backend_cpu(pid: int) -> float:
    """CPU seconds a PostgreSQL backend of this machine has used (utime + stime of /proc/PID/stat, in clock
    ticks of 10 ms); 0 when the server runs elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(
    pool: asyncpg.Pool[asyncpg.Record],
    org_id: uuid.UUID,
    start: datetime.datetime,
    end: datetime.datetime,
    every_page: bool,
    **subject: uuid.UUID,
) -> Sample:
    """Seconds reading, seconds drawing, CPU seconds for both (this process's and its PostgreSQL backend's),
    bars and pages of one timeline, as a console request would read and draw it. The CPU seconds leave out
    the time spent waiting for a core: on a shared machine the wall times wander with the neighbours' load."""
    read = drawn = 0.0
    bars = pages = 0
    cursor = None
    view = "group" if "group_id" in subject else "user"
    async with pool.acquire() as connection:
        backend = connection.get_server_pid()
        cpu = time.process_time() + backend_cpu(backend)
        while True:
            started = time.perf_counter()
            page = await read_timeline(connection, org_id, start, end, cursor=cursor, **subject)
            read += time.perf_counter() - started
            started = time.perf_counter()
            svg = render_timeline(page.bars, start, end, view=view, link=link)  # type: ignore[arg-type]
            drawn += time.perf_counter() - started
            bars, pages = bars + len(page.bars), pages + 1
            assert svg.endswith("</svg>")
            if page.next_cursor is None or not every_page:
                return read, drawn, time.process_time() + backend_cpu(backend) - cpu, bars, pages
            cursor = page.next_cursor


async def plans(
    pool: asyncpg.Pool[asyncpg.Record], org_id: uuid.UUID, seeded: dict[str, Any], start: Any, end: Any
) -> dict[str, str]:
    """The index each statement reads access_grants by, on this table (EXPLAIN)."""

    def index_of(plan: str) -> str:
        found = [line.strip() for line in plan.splitlines() if "on access_grants" in line]
        return found[0] if found else plan

    async with pool.acquire() as connection:

        async def explain(sql: str, *arguments: Any) -> str:
            return "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {sql}", *arguments))

        page = [start, end, None, None, None, None, access_timeline.PAGE_SIZE + 1]
        return {
            "group timeline": index_of(
                await explain(access_timeline._GROUP_PAGE, org_id, seeded["group"], *page)
            ),
            "user timeline": index_of(
                await explain(access_timeline._USER_PAGE, org_id, seeded["user"], *page)
            ),
            "access check at an instant": index_of(
                await explain(
                    ACCESS_CHECK_AT, org_id, seeded["user"], seeded["projects"][0], seeded["roles"][1], end
                )
            ),
        }


async def main(runs: int) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    async with scratch_database(server) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as connection:
                await migrate(connection)
                org_id = (await tenancy.create_org(connection, "Bench timeline")).org_id
            end = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            start = end - YEAR
            started = time.perf_counter()
            seeded = await seed(pool, org_id, start)
            counts = await pool.fetchrow(
                "SELECT (SELECT count(*) FROM events WHERE org_id = $1) AS events, "
                "(SELECT count(*) FROM access_grants WHERE org_id = $1) AS grants, "
                "(SELECT count(*) FROM access_grants WHERE org_id = $1 AND group_id = $2) AS group_grants",
                org_id,
                seeded["group"],
            )
            assert counts is not None
            print(
                f"seeded {counts['events']:,} events, {counts['grants']:,} grants ({counts['group_grants']:,} "
                f"of the group of {MEMBERS:,}) in {time.perf_counter() - started:.0f} s; {runs} runs in turns",
                flush=True,
            )
            scenarios = {
                f"group of {MEMBERS:,}, one year, first page": (False, {"group_id": seeded["group"]}),
                f"group of {MEMBERS:,}, one year, every page": (True, {"group_id": seeded["group"]}),
                "one user, one year (their pairs)": (True, {"user_id": seeded["user"]}),
            }
            samples: dict[str, list[Sample]] = {label: [] for label in scenarios}
            for every, subject in scenarios.values():
                await timed(pool, org_id, start, end, every, **subject)  # warm-up: statements prepared
            load_before = os.getloadavg()[0]
            for _ in range(runs):
                for label, (every, subject) in scenarios.items():
                    samples[label].append(await timed(pool, org_id, start, end, every, **subject))
            load_after = os.getloadavg()[0]
            explained = await plans(pool, org_id, seeded, start, end)
        finally:
            await pool.close()
    results = []
    print(
        f"{'scenario':<42}{'bars':>7}{'pages':>6}{'read ms p50/p99':>18}{'svg ms p50/p99':>17}"
        f"{'total ms p50/p99':>19}{'cpu ms p50/p99':>17}"
    )
    for label, measured in samples.items():
        read = [sample[0] * 1000 for sample in measured]
        drawn = [sample[1] * 1000 for sample in measured]
        total = [r + d for r, d in zip(read, drawn, strict=True)]
        cpu = [sample[2] * 1000 for sample in measured]
        bars, pages = measured[-1][3], measured[-1][4]
        row = {
            "scenario": label,
            "bars": bars,
            "pages": pages,
            "read_ms": {"p50": round(statistics.median(read), 1), "p99": round(p99(read), 1)},
            "render_ms": {"p50": round(statistics.median(drawn), 1), "p99": round(p99(drawn), 1)},
            "total_ms": {"p50": round(statistics.median(total), 1), "p99": round(p99(total), 1)},
            "cpu_ms_python_and_backend": {"p50": round(statistics.median(cpu), 1), "p99": round(p99(cpu), 1)},
        }
        results.append(row)
        print(
            f"{label:<42}{bars:>7,}{pages:>6}"
            f"{row['read_ms']['p50']:>10.1f}/{row['read_ms']['p99']:<7.1f}"
            f"{row['render_ms']['p50']:>9.1f}/{row['render_ms']['p99']:<7.1f}"
            f"{row['total_ms']['p50']:>11.1f}/{row['total_ms']['p99']:<7.1f}"
            f"{row['cpu_ms_python_and_backend']['p50']:>9.1f}/{row['cpu_ms_python_and_backend']['p99']:<7.1f}",
            flush=True,
        )
    print(
        f"load average (1 min) before the runs {load_before:.2f}, after {load_after:.2f}, on {os.cpu_count()} cores"
    )
    for statement, index in explained.items():
        print(f"{statement}: {index}")
    RESULTS.write_text(
        json.dumps(
            {
                "measured_at": datetime.datetime.now(datetime.UTC).isoformat(),
                "events": counts["events"],
                "grants": counts["grants"],
                "group_grants": counts["group_grants"],
                "runs": runs,
                "load_average_before_after": [load_before, load_after],
                "cores": os.cpu_count(),
                "results": results,
                "plans": explained,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
