"""The event feed's catch-up: events/s when a reader starts from the beginning of a 1,000,000-event log.

Generates an organization's history through the domain (as bench/replay_rebuild.py does), loads it with COPY,
seals it as the runner would, then times, in turns, a median of `--runs` runs each:
- the baseline: the bare commit-safe `read_log` (eventstore/log_reader.py) in pages, decoding rows into
  RecordedEvent, the ceiling of any reader of the log in log order;
- the feed of the organization, from the start to the end, in pages of `--limit`, each page encoded to the
  JSON the API sends;
- the same through the platform's feed (every organization);
- the organization's feed filtered to one type (group.member_added, about a third of the events).

    .venv/bin/python bench/event_feed.py [--events 1000000] [--runs 3] [--limit 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from replay_rebuild import history  # beside this script
from scratch import copy_events, scratch_database

from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services.event_feed import EventFeed
from eventstore.log_reader import read_log
from eventstore.notify import CommitNotifier
from eventstore.pool import create_pool
from eventstore.records import LOG_START
from projections.seals import seal_pending

_encoder = msgspec.json.Encoder()


async def main(count: int, runs: int, limit: int) -> None:
    server = await asyncio.to_thread(database_url, Settings.from_env())
    async with scratch_database(server) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        notifier = CommitNotifier(pool)
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
                started = time.perf_counter()
                await seal_pending(connection)
                sealed = time.perf_counter() - started
                await connection.execute("VACUUM ANALYZE events")
                await connection.execute("VACUUM ANALYZE audit_seals")
            print(
                f"{total:,} events generated through the domain in {generated:.1f} s, loaded with COPY in "
                f"{loaded:.1f} s, sealed in {sealed:.1f} s; pages of {limit}, median of {runs} runs in turns\n"
            )
            feed = EventFeed(pool, notifier)

            async def baseline() -> int:
                read = 0
                after = LOG_START
                async with pool.acquire() as connection:
                    while batch := await read_log(connection, after, limit):
                        read += len(batch)
                        after = batch[-1].log_position
                return read

            def feed_reader(scope: uuid.UUID | None, types: list[str] | None) -> Callable[[], Awaitable[int]]:
                async def read_feed() -> int:
                    read = 0
                    cursor: str | None = None
                    while True:
                        page = await feed.read(scope, cursor, limit=limit, types=types)
                        _encoder.encode(page)  # the bytes the API sends
                        read += len(page.data)
                        if page.next_cursor == cursor:
                            return read
                        cursor = page.next_cursor

                return read_feed

            scenarios: list[tuple[str, Callable[[], Awaitable[int]]]] = [
                ("baseline: read_log, decoded", baseline),
                ("feed of the org, encoded to JSON", feed_reader(org_id, None)),
                ("platform feed (every org), encoded to JSON", feed_reader(None, None)),
                ("feed of the org, types=group.member_added", feed_reader(org_id, ["group.member_added"])),
            ]
            seconds: dict[str, list[float]] = {label: [] for label, _ in scenarios}
            published: dict[str, int] = {}
            for _ in range(runs):
                for label, scenario in scenarios:
                    started = time.perf_counter()
                    published[label] = await scenario()
                    seconds[label].append(time.perf_counter() - started)
            base_rate = total / statistics.median(seconds[scenarios[0][0]])
            print(f"{'scenario':<46}{'median s':>10}{'log events/s':>14}{'ratio':>8}{'published':>12}")
            for label, _ in scenarios:
                median = statistics.median(seconds[label])
                rate = total / median
                print(
                    f"{label:<46}{median:>10.2f}{rate:>14,.0f}{rate / base_rate:>8.2f}{published[label]:>12,}",
                    flush=True,
                )
        finally:
            await notifier.aclose()
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.runs, arguments.limit))
