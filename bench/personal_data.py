"""What encrypting personal data costs: POST /Users throughput and a full rebuild, with and without the cipher.

Two scratch databases, one per side, alike but for the cipher: "with" is the service as it runs (its pools
made with the cipher of personal data, a data key per user, personal values stored encrypted); "without" is
the same code on pools made with no cipher (`create_pool(personal_data=None)`), which write and read
plaintext. The switch lives here, in how the benchmark makes its pools, not in a setting: production has no
way to turn encryption off.

Each side's log is first loaded with the same generated history (bench/replay_rebuild.py's, through the
domain; on the "with" side its personal values encrypted as the store would, with the keys stored), then the
two sides take turns, several rounds, so that the shared machine's noise falls on both alike:
- POST /Users: `--posts` Okta-shaped creations a turn (name, e-mails, display name, externalId: all
  encrypted), 8 at a time, through the real app in-process (auth, parsing, the append's one statement);
- a full rebuild: the SCIM projection (`projections rebuild scim`) and analytics.access, from the log alone.
Medians of the turns, and the ratio with/without (for throughput, below 1 is a cost; for seconds, above 1).

    .venv/bin/python bench/personal_data.py [--events 100000] [--posts 300] [--rounds 5]

Uses DATABASE_URL if set, else the embedded server in SCIMLEDGER_DATA_DIR (./.data); works in databases of its
own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from replay_rebuild import history  # beside this script
from scratch import copy_events, scratch_database  # beside this script
from starlette.applications import Starlette

from app.bootstrap import build_services
from app.http.app import create_app
from app.http.console.pages import console_templates
from app.http.operations import Metrics, Operations
from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.personal_data_keys import personal_data_cipher
from app.infrastructure.settings import Settings
from app.services import tenancy
from eventstore.personal_data import PersonalDataCipher
from eventstore.pool import connect, create_pool
from eventstore.rebuilds import rebuild
from projections.analytics import AnalyticsAccess

CONCURRENCY = 8


class Side:
    """One side of the comparison: its database, its pool (with the cipher or without), the app on it."""

    def __init__(self, label: str, url: str, cipher: PersonalDataCipher | None, settings: Settings) -> None:
        self.label, self.url, self.cipher, self.settings = label, url, cipher, settings
        self.posts: list[float] = []  # users created per second, a turn each
        self.rebuilds: dict[str, list[float]] = {"scim": [], "analytics.access": []}  # seconds

    @asynccontextmanager
    async def running(self) -> AsyncIterator[tuple[asyncpg.Pool, httpx.AsyncClient]]:
        pool = await create_pool(self.url, min_size=2, max_size=CONCURRENCY + 2, personal_data=self.cipher)
        try:
            services = build_services(self.settings, pool)
            app = create_app(self.settings)
            app.router.lifespan_context = _serving(services)
            async with pool.acquire() as connection:
                org = await tenancy.create_org(connection, f"bench-{self.label}")
                _, token = await tenancy.issue_token(connection, org.org_id)
            async with LifespanManager(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
                async with httpx.AsyncClient(
                    transport=transport,
                    base_url="http://bench.test/scim/v2",
                    headers={"Authorization": f"Bearer {token}"},
                ) as client:
                    yield pool, client
            await services.notifier.aclose()
        finally:
            await pool.close()


def _serving(services: Any) -> Any:
    """The app's lifespan, on services the benchmark built (on its own pool) rather than bootstrap's."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {
            "services": services,
            "operations": Operations(services, Metrics(), None),
            "templates": console_templates(),
        }

    return lifespan


def okta_user(user_name: str) -> dict[str, Any]:
    return {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        ],
        "userName": user_name,
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Isaac Brock",
        "externalId": uuid.uuid4().hex[:20],
        "active": True,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "4711",
            "department": "Engineering",
        },
    }


async def post_users(client: httpx.AsyncClient, count: int) -> float:
    """Users created per second: `count` POST /Users, CONCURRENCY at a time."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with semaphore:
            response = await client.post("/Users", json=okta_user(f"{uuid.uuid4().hex}@bench.example"))
            assert response.status_code == 201, response.text

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


async def rebuild_seconds(pool: asyncpg.Pool, side: Side) -> None:
    services = build_services(side.settings, pool)
    try:
        async with pool.acquire() as connection, pool.acquire() as reader:
            started = time.perf_counter()
            await services.projection.rebuild(connection, reader)
            side.rebuilds["scim"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await rebuild(connection, AnalyticsAccess())
            side.rebuilds["analytics.access"].append(time.perf_counter() - started)
    finally:
        await services.notifier.aclose()


async def load_history(url: str, events: int, cipher: PersonalDataCipher | None) -> int:
    """The generated history in the side's log, and on the "with" side the data keys it was sealed with."""
    org_id = uuid.uuid4()
    keys: dict[uuid.UUID, Any] = {}
    wrapped: list[tuple[uuid.UUID, uuid.UUID, bytes]] = []

    def seal(org: uuid.UUID, stream: uuid.UUID, type_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert cipher is not None
        if not cipher.holds_personal_data(type_name):
            return payload
        if stream not in keys:
            keys[stream], wrapped_key = cipher.new_key()
            wrapped.append((org, stream, wrapped_key))
        return cipher.seal_payload(type_name, payload, org, stream, keys[stream], {})

    rows = history(org_id, events, seal=seal if cipher is not None else None)
    connection = await connect(url, None)  # the pool's codecs; the payloads are encoded (and sealed) already
    try:
        async with connection.transaction():
            await copy_events(connection, rows)
            await connection.copy_records_to_table(
                "personal_data_keys", records=wrapped, columns=["org_id", "user_id", "wrapped_key"]
            )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return len(rows)


async def assert_compared_alike(pool: asyncpg.Pool, side: Side) -> None:
    """Both sides rebuilt the same rows from their logs, and only the "with" side's log hides the names."""
    name = "user0@bench.example"
    assert await pool.fetchval("SELECT count(*) FROM scim_users WHERE user_name = $1", name) == 1
    assert await pool.fetchval("SELECT count(*) FROM analytics.users WHERE user_name = $1", name) == 1
    stored = await pool.fetchval("SELECT count(*) FROM events WHERE strpos(payload::text, $1) > 0", name)
    assert stored == (0 if side.cipher is not None else 1), (side.label, stored)


def median(values: list[float]) -> float:
    return statistics.median(values)


async def main(events: int, posts: int, rounds: int) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    kek = Fernet.generate_key().decode()
    async with contextlib.AsyncExitStack() as stack:
        sides = []
        for label, encrypted in (("with", True), ("without", False)):
            url = await stack.enter_async_context(scratch_database(server))
            settings = Settings(
                database_url=url,
                personal_data_keys=kek,
                rate_limit_per_second=0,
                token_cache_seconds=60,
                org_concurrency=1000,
                worker=False,
            )
            cipher = personal_data_cipher(settings) if encrypted else None
            connection = await asyncpg.connect(url)
            try:
                await migrate(connection)
            finally:
                await connection.close()
            loaded = await load_history(url, events, cipher)
            sides.append(Side(label, url, cipher, settings))
        print(
            f"{loaded:,} events of history in each side's log; {posts} POST /Users a turn; {rounds} rounds\n"
        )
        runs = [await stack.enter_async_context(side.running()) for side in sides]
        for (_, client), _side in zip(runs, sides, strict=True):
            await post_users(client, max(posts // 5, 20))  # warm: caches, prepared statements
        for round_number in range(rounds):
            # Alternate which side goes first, so that neither always follows the other's work.
            order = list(zip(sides, runs, strict=True))
            if round_number % 2:
                order.reverse()
            for side, (_, client) in order:
                side.posts.append(await post_users(client, posts))
            for side, (pool, _) in order:
                await rebuild_seconds(pool, side)
            print(f"round {round_number + 1}/{rounds} done", flush=True)
        for side, (pool, _) in zip(sides, runs, strict=True):
            await assert_compared_alike(pool, side)

    ciphered, plain = sides
    print(f"\n{'measure (median of ' + str(rounds) + ' turns)':<40}{'with':>12}{'without':>12}{'ratio':>10}")
    print(
        f"{'POST /Users, users/s':<40}{median(ciphered.posts):>12.0f}{median(plain.posts):>12.0f}"
        f"{median(ciphered.posts) / median(plain.posts):>10.3f}"
    )
    for name in ciphered.rebuilds:
        with_seconds, without_seconds = median(ciphered.rebuilds[name]), median(plain.rebuilds[name])
        print(
            f"{'rebuild ' + name + ', seconds':<40}{with_seconds:>12.2f}{without_seconds:>12.2f}"
            f"{with_seconds / without_seconds:>10.3f}"
        )
    total_with = sum(median(values) for values in ciphered.rebuilds.values())
    total_without = sum(median(values) for values in plain.rebuilds.values())
    print(
        f"{'full rebuild (both), seconds':<40}{total_with:>12.2f}{total_without:>12.2f}{total_with / total_without:>10.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.posts, arguments.rounds))
