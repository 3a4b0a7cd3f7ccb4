"""The primary fails over under SCIM write load, and no acknowledged write is lost.

A pg_auto_failover formation on loopback (tests/ha/formation.py: a monitor, a primary, a synchronous
standby); `scimledger serve`, runner on, with a multi-host DATABASE_URL and target_session_attrs=read-write;
8 clients write as Okta does (POST /Users, then a group membership PATCH, then for every other user the
deactivation whose follow-up a reactor makes: removal from the organization). The primary node crashes
(SIGKILL of its pg_autoctl supervisor's group and of its postmaster) while they write, after an operator's
switchover under the same load; after each they go on until writes succeed again. Then, on the primary:

- every write answered 2xx is in the log and in the projections;
- no write refused (any other answer, which the service only gives as a 503 with Retry-After, never a 500)
  is, except those whose outcome the service said it does not know (a 503 whose detail says the change
  "may or may not have been saved": the connection broke while it committed) and those that got no answer
  at all (the connection to the service broke, or the client gave up): each of those is in the log and the
  projections whole, or absent from both;
- the runner resumed with no event skipped or applied twice: each organization's seals and event counts by
  type (analytics.provisioning_activity) equal its events, and nothing is parked;
- the service served writes again within a bound after each failover (PHASE_SECONDS; a liveness bound, not a speed
  claim: the figure measured is printed and, with SCIMLEDGER_HA_RESULTS=path, appended there as JSON);
- `scimledger audit verify` passes.

Run by `make test-ha` (not collected by `make test`): it needs Debian's pg_auto_failover packages.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import provisioned_user_names
from tests.ha.formation import PG_AUTOCTL, Formation, formation_directory, new_formation
from tests.ha.workload import Failover, Workload, write_through_a_failover
from tests.service import ServiceProcess, new_org, run_cli

pytestmark = pytest.mark.slow

# Writing before the fault; after the first success that follows it; and the bound on that first success, a
# liveness bound, not a speed claim (pg_auto_failover with the test's lowered timeouts fails over a crashed
# primary in about 5 s here).
PHASE_SECONDS = (3.0, 2.0, 60.0)
CATCH_UP_BOUND_SECONDS = 60.0


@pytest.fixture
async def formation() -> AsyncIterator[Formation]:
    assert PG_AUTOCTL is not None, "pg_autoctl is missing: `make test-ha` installs it from Debian"
    with formation_directory() as root:
        formation = new_formation(root)
        try:
            await formation.start()
            yield formation
        finally:
            formation.stop()


async def rows(url: str, query: str, *args: Any) -> set[tuple[Any, ...]]:
    connection = await asyncpg.connect(url)
    try:
        return {tuple(row) for row in await connection.fetch(query, *args)}
    finally:
        await connection.close()


async def column(url: str, query: str, *args: Any) -> set[Any]:
    return {row[0] for row in await rows(url, query, *args)}


async def runner_caught_up(url: str) -> bool:
    """Every consumer's position at the log's end (no event above it that the runner may read)."""
    connection = await asyncpg.connect(url)
    try:
        behind: int = await connection.fetchval(
            "SELECT count(*) FROM consumer_positions c WHERE EXISTS ("
            "  SELECT 1 FROM events e WHERE (e.tx, e.position) > (c.tx, c.position))"
        )
        return behind == 0
    finally:
        await connection.close()


async def until_runner_caught_up(url: str, service: ServiceProcess) -> None:
    """Twice: a reactor's own events are read by the other consumers after it has written them."""
    for _ in range(2):
        deadline = time.monotonic() + CATCH_UP_BOUND_SECONDS
        while not await runner_caught_up(url):
            assert time.monotonic() < deadline, f"the runner did not catch up:\n{service.output()}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)


async def assert_users_whole(url: str, org_id: uuid.UUID, workload: Workload) -> set[str]:
    """Every acknowledged POST /Users is in the log (UserProvisioned) and the SCIM projection; no refused one
    is in either; an unknown one is in both or neither. Returns the userNames in the log."""
    logged = await provisioned_user_names(url, org_id)
    projected = await column(url, "SELECT user_name FROM scim_users WHERE org_id = $1", org_id)
    creates = workload.of("create")
    assert {call.key[0] for call in creates if call.acknowledged} <= logged
    assert not {call.key[0] for call in creates if call.refused} & logged
    assert logged == projected, "each user is in the log and the projection, or in neither"
    assert logged <= {call.key[0] for call in creates}
    return logged


async def assert_memberships_whole(url: str, org_id: uuid.UUID, workload: Workload) -> None:
    """Every acknowledged group PATCH left its GroupMemberAdded in the log; no refused one did."""
    joined = await rows(
        url,
        "SELECT s.user_name, e.payload->>'group_id' FROM events e JOIN scim_users s "
        "ON s.org_id = e.org_id AND s.user_id = e.stream_id WHERE e.org_id = $1 AND e.type = 'GroupMemberAdded'",
        org_id,
    )
    joins = workload.of("join")
    assert {call.key for call in joins if call.acknowledged} <= joined
    assert not {call.key for call in joins if call.refused} & joined


async def assert_deactivations_followed(url: str, org_id: uuid.UUID, workload: Workload) -> None:
    """Every acknowledged deactivation is in the log, and the reactor's removal from the organization follows
    it exactly once; no refused one is; the SCIM projection shows exactly those users inactive."""
    counted = await rows(
        url,
        "SELECT s.user_name, count(*) FILTER (WHERE e.type = 'UserDeactivated'), "
        "count(*) FILTER (WHERE e.type = 'UserRemovedFromOrganization') FROM events e JOIN scim_users s "
        "ON s.org_id = e.org_id AND s.user_id = e.stream_id WHERE e.org_id = $1 "
        "AND e.type IN ('UserDeactivated', 'UserRemovedFromOrganization') GROUP BY s.user_name",
        org_id,
    )
    followed = {name: (deactivations, removals) for name, deactivations, removals in counted}
    for call in workload.of("deactivate"):
        if call.acknowledged:
            assert call.key[0] in followed, call
        elif call.refused:
            assert call.key[0] not in followed, call
    assert set(followed.values()) <= {(1, 1)}, followed
    inactive = await column(url, "SELECT user_name FROM scim_users WHERE org_id = $1 AND NOT active", org_id)
    assert inactive == set(followed)


async def assert_runner_exactly_once(url: str, org_id: uuid.UUID) -> int:
    """Nothing skipped (every event sealed, and counted by type), nothing applied twice (no count above the
    log's), nothing parked. Returns the organization's event count."""
    events_by_type = dict(
        await rows(url, "SELECT type, count(*) FROM events WHERE org_id = $1 GROUP BY type", org_id)
    )
    counted_by_type = dict(
        await rows(
            url,
            "SELECT event_type, sum(events)::bigint FROM analytics.provisioning_activity "
            "WHERE org_id = $1 GROUP BY event_type",
            org_id,
        )
    )
    assert counted_by_type == events_by_type
    [(seals, events)] = await rows(
        url,
        "SELECT (SELECT count(*) FROM audit_seals WHERE org_id = $1), "
        "(SELECT count(*) FROM events WHERE org_id = $1)",
        org_id,
    )
    assert seals == events
    assert await rows(url, "SELECT name, position, error FROM parked_events") == set()
    return int(events)


async def assert_synchronous(formation: Formation) -> None:
    """Without a synchronous standby an acknowledged write could be lost: the test relies on one."""
    probe = await asyncpg.connect(formation.node_url(await formation.primary()))
    try:
        assert await probe.fetchval("SHOW synchronous_standby_names") != ""
        assert await probe.fetchval("SHOW synchronous_commit") in ("on", "remote_apply")
    finally:
        await probe.close()


async def test_a_switchover_then_a_crash_lose_no_acknowledged_write_and_the_service_serves_again(
    formation: Formation,
) -> None:
    await assert_synchronous(formation)
    url = formation.url()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "3",
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
        "SCIMLEDGER_ORG_CONCURRENCY": "100",
        "SCIMLEDGER_RUNNER_POLL_SECONDS": "0.2",
        "SCIMLEDGER_LOG_FORMAT": "json",
    }
    env.pop("SCIMLEDGER_TEST_DATABASE_URL", None)
    run_cli(env, "migrate")
    org = f"Failover {uuid.uuid4().hex[:6]}"
    [token] = new_org(env, org, "scim")
    run_cli(env, "project", "create", "--org", org, "Apollo")
    for role in ("Admin", "Viewer"):
        run_cli(env, "role", "create", "--org", org, role)
    service = ServiceProcess(env).start()
    workload = Workload()
    try:
        # An operator's switchover first: the primary is made read-only and demoted once the standby has
        # caught up; the demoted node comes back as the standby, synchronous again.
        switchover = await write_through_a_failover(
            formation, service, token, workload, formation.switchover, *PHASE_SECONDS
        )
        await formation.until_states({"node1": "secondary", "node2": "primary"})
        await assert_synchronous(formation)
        crash = await write_through_a_failover(
            formation, service, token, workload, formation.kill, *PHASE_SECONDS
        )
        await until_runner_caught_up(url, service)
        async with httpx.AsyncClient(timeout=10) as client:
            readiness = await client.get(f"{service.root}/readyz")
    finally:
        assert service.stop() == 0, service.output()

    statuses = Counter(call.status for call in workload.calls)
    assert 500 not in statuses, f"a 500 during the failover:\n{service.output('error')}"
    assert set(statuses) <= {200, 201, 204, 503, None}, statuses
    assert all(call.retry_after for call in workload.calls if call.status == 503)
    assert readiness.status_code == 200, readiness.text
    [org_id] = await column(url, "SELECT org_id FROM orgs WHERE name = $1", org)
    logged_users = await assert_users_whole(url, org_id, workload)
    await assert_memberships_whole(url, org_id, workload)
    await assert_deactivations_followed(url, org_id, workload)
    events = await assert_runner_exactly_once(url, org_id)
    verified = run_cli(env, "audit", "verify", "--org", org, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    await record(service, workload, logged_users, {"switchover": switchover, "crash": crash}, events)


async def record(
    service: ServiceProcess,
    workload: Workload,
    logged_users: set[str],
    failovers: dict[str, Failover],
    events: int,
) -> None:
    """Print the run's figures and, with SCIMLEDGER_HA_RESULTS=path, append them there as a JSON line."""
    # Which errors the service met and answered 503: found by running this, and each mapped there.
    answered_503 = Counter(
        line.get("error_type", "?")
        for line in _log_lines(service)
        if line.get("message", "").startswith(("database unavailable", "commit outcome unknown"))
    )
    unknown_users = {call.key[0] for call in workload.of("create") if call.unknown}
    figures = {
        "writes_acknowledged": sum(1 for call in workload.calls if call.acknowledged),
        "acknowledged_lost": 0,  # asserted above
        "refused_503": sum(1 for call in workload.calls if call.refused),
        "outcome_unknown": sum(1 for call in workload.calls if call.unknown),
        "outcome_unknown_users_committed": len(unknown_users & logged_users),
        "crash_seconds_to_first_2xx": round(failovers["crash"].serving_again, 2),
        "crash_seconds_refusing": round(failovers["crash"].refusing, 2),
        "switchover_seconds_refusing": round(failovers["switchover"].refusing, 2),
        "events": events,
        "errors_answered_503": dict(answered_503),
    }
    print(f"failover: {json.dumps(figures)}")
    results = os.environ.get("SCIMLEDGER_HA_RESULTS")
    if results:
        record = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures})
        await asyncio.to_thread(_append_line, Path(results), record)


def _append_line(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(line + "\n")


def _log_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    lines = []
    for line in service.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines
