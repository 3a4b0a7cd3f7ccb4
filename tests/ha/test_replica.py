"""Auditors and the feed's catch-up read from a real streaming replica; SCIM stays on the primary.

A primary and a physical standby made with `pg_basebackup -R` (tests/ha/streaming.py) run on loopback;
`scimledger serve` runs with DATABASE_URL on the primary and SCIMLEDGER_REPLICA_DATABASE_URL on the standby.
The standby's replay is paused (pg_wal_replay_pause) to hold it behind the primary for as long as a test
needs, rather than hoping that it lags. Shown:

- /audit answers from the replica, with Data-Source and Data-As-Of; while the replica is behind, a write made
  since is absent from the answer and its time is after the stated Data-As-Of; a fresh read
  (Cache-Control: no-cache) waits and then answers 503 with Retry-After while the replica stays behind, and
  sees the write once it has caught up, with a Data-As-Of no earlier than the request;
- SCIM reads its own writes throughout (a user created while the replica is paused is read back at once);
- the event feed, read from the start while the replica is paused behind the primary, is served partly from
  the replica and partly from the primary and holds exactly the primary's log, in its order, by SQL: nothing
  skipped, nothing twice, however the reads switch between the two servers;
- the analytics role's documented connection works on the replica (a login in scimledger_analyst reads
  analytics there, and nothing else).

Run by `make test-ha` (not `make test`): it starts two PostgreSQL servers of its own.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from projections.public_event_mapping import PUBLISHED_TYPE_NAMES, event_id
from tests.ha.streaming import StreamingPair, streaming_pair
from tests.service import ServiceProcess, new_org, run_cli

pytestmark = pytest.mark.slow

CATCH_UP_SECONDS = 60.0
SCIM_TYPE = "application/scim+json"


@dataclass
class Deployment:
    pair: StreamingPair
    service: ServiceProcess
    org_id: uuid.UUID
    scim: httpx.Client
    auditor: httpx.Client
    admin: httpx.Client


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with streaming_pair() as pair:
        env = {
            **os.environ,
            "DATABASE_URL": pair.primary.url(),
            "SCIMLEDGER_REPLICA_DATABASE_URL": pair.standby.url(),
            "SCIMLEDGER_REPLICA_FRESH_WAIT_SECONDS": "1",
            "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
            "SCIMLEDGER_ORG_CONCURRENCY": "100",
            "SCIMLEDGER_RUNNER_POLL_SECONDS": "0.2",
        }
        env.pop("SCIMLEDGER_TEST_DATABASE_URL", None)
        run_cli(env, "migrate")
        name = f"Replica {uuid.uuid4().hex[:6]}"
        scim_token, auditor_token, admin_token = new_org(env, name, "scim", "auditor", "admin")
        org_id = asyncio.run(_value(pair.primary.url(), "SELECT org_id FROM orgs WHERE name = $1", name))
        service = ServiceProcess(env).start()
        clients = [
            httpx.Client(base_url=service.root, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            for token in (scim_token, auditor_token, admin_token)
        ]
        try:
            yield Deployment(pair, service, org_id, *clients)
        finally:
            for client in clients:
                client.close()
            service.stop()


async def _value(url: str, query: str, *args: Any) -> Any:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


async def _rows(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def until_replica_caught_up(pair: StreamingPair) -> None:
    target = await _value(pair.primary.url(), "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + CATCH_UP_SECONDS
    query = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0"
    while not await _value(pair.standby.url(), query, target):
        assert time.monotonic() < deadline, f"the standby did not catch up:\n{pair.logs()}"
        await asyncio.sleep(0.05)


def create_user(deployment: Deployment, user_name: str) -> dict[str, Any]:
    response = deployment.scim.post(
        "/scim/v2/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "name": {"givenName": "Ada", "familyName": "Replica"},
            "active": True,
        },
        headers={"Content-Type": SCIM_TYPE},
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    # Read-your-writes: SCIM reads from the primary, whatever the replica has.
    again = deployment.scim.get(f"/scim/v2/Users/{user['id']}")
    assert again.status_code == 200, again.text
    assert again.json()["userName"] == user_name
    return user


def as_of(response: httpx.Response) -> datetime.datetime:
    return datetime.datetime.fromisoformat(response.headers["Data-As-Of"])


async def user_positions(deployment: Deployment, user_id: str) -> set[int]:
    rows = await _rows(
        deployment.pair.primary.url(),
        "SELECT position FROM events WHERE org_id = $1 AND stream_id = $2",
        deployment.org_id,
        uuid.UUID(user_id),
    )
    return {row[0] for row in rows}


def history_positions(response: httpx.Response) -> set[int]:
    assert response.status_code == 200, response.text
    return {event["position"] for event in response.json()["events"]}


async def test_audit_answers_from_the_replica_and_says_how_fresh(deployment: Deployment) -> None:
    before = create_user(deployment, f"before-{uuid.uuid4().hex[:8]}@example.com")
    await until_replica_caught_up(deployment.pair)
    await _value(deployment.pair.standby.url(), "SELECT pg_wal_replay_pause()")
    try:
        written_after = datetime.datetime.now(datetime.UTC)
        during = create_user(deployment, f"during-{uuid.uuid4().hex[:8]}@example.com")
        during_positions = await user_positions(deployment, during["id"])

        stale = deployment.auditor.get("/audit/history", params={"limit": 10000})
        assert stale.headers["Data-Source"] == "replica"
        seen = history_positions(stale)
        assert await user_positions(deployment, before["id"]) <= seen
        assert not during_positions & seen, "the replica is paused before the write"
        # The bound is honest: the write happened after what the answer says it holds.
        assert as_of(stale) < written_after

        refused = deployment.auditor.get("/audit/history", headers={"Cache-Control": "no-cache"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]
        assert "behind" in refused.json()["detail"]

        # Every other /audit answer states its bound too.
        for path in ("/audit/head", "/audit/verify"):
            answer = deployment.auditor.get(path)
            assert answer.status_code == 200, answer.text
            assert answer.headers["Data-Source"] == "replica"
            assert as_of(answer) < written_after
    finally:
        await _value(deployment.pair.standby.url(), "SELECT pg_wal_replay_resume()")

    asked = datetime.datetime.now(datetime.UTC)
    fresh = deployment.auditor.get(
        "/audit/history", params={"limit": 10000}, headers={"Cache-Control": "no-cache"}
    )
    assert fresh.headers["Data-Source"] == "replica"
    assert during_positions <= history_positions(fresh)
    assert as_of(fresh) >= asked


async def test_the_feed_catches_up_from_the_replica_without_a_gap_or_a_repeat(
    deployment: Deployment,
) -> None:
    for number in range(12):
        create_user(deployment, f"early-{number}-{uuid.uuid4().hex[:6]}@example.com")
    await until_replica_caught_up(deployment.pair)
    await _value(deployment.pair.standby.url(), "SELECT pg_wal_replay_pause()")
    sources: list[str] = []
    read: list[str] = []
    cursor: str | None = None

    def read_pages(pages: int | None = None) -> None:
        """Pages until an empty one (or `pages` of them), as a catching-up reader reads."""
        nonlocal cursor
        while pages is None or pages > 0:
            params = {"limit": "5", **({"after": cursor} if cursor else {})}
            response = deployment.admin.get(f"/api/v1/orgs/{deployment.org_id}/events", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            sources.append(response.headers.get("Data-Source", "primary"))
            if response.headers.get("Data-Source") == "replica":
                assert response.headers["Data-As-Of"]
            read.extend(event["id"] for event in page["data"])
            cursor = page["next_cursor"]
            if not page["data"]:
                return
            if pages is not None:
                pages -= 1

    try:
        for number in range(8):
            create_user(deployment, f"late-{number}-{uuid.uuid4().hex[:6]}@example.com")
        read_pages(2)  # from the replica, far behind
        read_pages()  # on past the replica's end, from the primary
        # An empty page means "caught up": it came only once the primary's log was read to its end.
        assert set(await published_ids(deployment)) <= set(read)
    finally:
        await _value(deployment.pair.standby.url(), "SELECT pg_wal_replay_resume()")
    for number in range(6):
        create_user(deployment, f"later-{number}-{uuid.uuid4().hex[:6]}@example.com")
    await until_replica_caught_up(deployment.pair)
    read_pages()
    assert {"replica", "primary"} <= set(sources), sources

    # The oracle: the organization's published events in the primary's log order. The runner's own events
    # (none here, but a reactor's if any) may still be committing: read until the two agree or time is up.
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        logged = await published_ids(deployment)
        if len(logged) == len(read) or time.monotonic() > deadline:
            break
        read_pages()
        await asyncio.sleep(0.2)
    assert len(read) == len(set(read)), "no event twice"
    assert read == logged, "every event of the primary's log, in its order"


async def published_ids(deployment: Deployment) -> list[str]:
    """The organization's published events' ids, in the primary's log order."""
    rows = await _rows(
        deployment.pair.primary.url(),
        "SELECT stream_id, version FROM events WHERE org_id = $1 AND type = ANY($2::text[]) "
        "ORDER BY tx, position",
        deployment.org_id,
        sorted(PUBLISHED_TYPE_NAMES),
    )
    return [event_id(deployment.org_id, row["stream_id"], row["version"]) for row in rows]


async def test_analysts_read_analytics_on_the_replica_and_nothing_else(deployment: Deployment) -> None:
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    await _value(deployment.pair.primary.url(), f"CREATE ROLE {login} LOGIN IN ROLE scimledger_analyst")
    create_user(deployment, f"counted-{uuid.uuid4().hex[:8]}@example.com")
    query = "SELECT count(*) FROM analytics.users WHERE org_id = $1"
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:  # the runner writes analytics asynchronously; then the standby replays it
        await until_replica_caught_up(deployment.pair)
        on_primary = await _value(deployment.pair.primary.url(), query, deployment.org_id)
        on_replica = await _value(deployment.pair.standby.url(user=login), query, deployment.org_id)
        users = await _value(
            deployment.pair.primary.url(),
            "SELECT count(*) FROM scim_users WHERE org_id = $1",
            deployment.org_id,
        )
        if on_primary == users == on_replica or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert on_replica == on_primary == users
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _value(deployment.pair.standby.url(user=login), "SELECT count(*) FROM events")
