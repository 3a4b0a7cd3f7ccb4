"""The event feed over a real log: order, completeness under concurrent writers, filters, cursors, waiting,
and which organizations' events a reader sees."""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid

import asyncpg
import pytest

from app.services import event_feed
from app.services.container import Services
from app.services.event_feed import EventFeed, FeedPage, InvalidFeedRequest, encode_cursor
from domain.catalog import Group
from domain.users import User
from eventstore.records import LogPosition, Metadata
from eventstore.store import EventStore
from projections import public_events as public
from projections import seals
from projections.public_event_mapping import event_id
from tests.conftest import log_head

META = Metadata(actor="token:feed", request_id="req-feed")


async def head_cursor(pool: asyncpg.Pool) -> str:
    """A cursor at the log's head: the shared test database holds other tests' events."""
    async with pool.acquire() as connection:
        return encode_cursor(await log_head(connection))


async def provision(store: EventStore, org_id: uuid.UUID, name: str, *, deactivate: bool = False) -> User:
    """A user provisioned (and deactivated), once the log can be read up to it."""
    user = User(org_id=str(org_id), attributes={"userName": name}, active=True)
    if deactivate:
        user.set_active(False)
    [*_, last] = await store.append(org_id, user.id, 0, user.collect_events(), META)
    await readable(store, last.tx)
    return user


async def readable(store: EventStore, tx: int) -> None:
    """Wait until no transaction older than `tx` is running. Transaction ids are the whole server's: another
    database's long transaction (the tests of another checkout, dropping their database) holds back every
    commit-safe reader, the feed as the runner, until it ends."""
    xmin = "SELECT pg_snapshot_xmin(pg_current_snapshot()) <= $1::xid8"
    while True:
        async with store.transaction() as transaction:
            if not await transaction.connection.fetchval(xmin, tx):
                return
        await asyncio.sleep(0.01)


async def read_all(
    feed: EventFeed, org_id: uuid.UUID | None, after: str | None, **options: object
) -> FeedPage:
    """Every page from `after` until one comes back empty: the events, and the cursor of the last page."""
    events: list[public.PublicEvent] = []
    while True:
        page = await feed.read(org_id, after, **options)  # type: ignore[arg-type]
        events += page.data
        if not page.data and page.next_cursor == after:
            return FeedPage(events, page.next_cursor)
        after = page.next_cursor


async def test_the_feed_misses_and_repeats_nothing_while_8_writers_commit_out_of_order(
    services: Services, store: EventStore, pool: asyncpg.Pool
) -> None:
    """The tailing reader's oracle (tests/integration/test_event_store.py), read through the feed, by an
    organization's reader and by a platform reader at once. Reading `position > last` missed hundreds here."""
    writers, per_writer = 8, 1000
    org_id = uuid.uuid4()
    platform_start = await head_cursor(pool)
    written: dict[str, tuple[uuid.UUID, int]] = {}
    last_tx = 0
    done = asyncio.Event()

    async def writer(seed: int) -> None:
        nonlocal last_tx
        chooser = random.Random(seed)
        user = User(org_id=str(org_id), attributes={"userName": f"w{seed}"}, active=True)
        for _ in range(per_writer - 1):
            user.set_active(not user.active)
        for event in user.collect_events():
            async with store.transaction() as transaction:
                [recorded] = await transaction.append(
                    org_id, user.id, event.originator_version - 1, [event], META
                )
                last_tx = max(last_tx, recorded.tx)
                # Hold the transaction open a little, so positions taken earlier commit later.
                if chooser.random() < 0.3:
                    await asyncio.sleep(chooser.random() * 0.002)
            written[event_id(org_id, user.id, event.originator_version)] = (user.id, event.originator_version)

    async def reader(scope: uuid.UUID | None, after: str | None) -> list[public.PublicEvent]:
        seen: list[public.PublicEvent] = []
        while True:
            finished = done.is_set()
            page = await services.feed.read(scope, after, limit=500)
            seen += [event for event in page.data if event.org_id == org_id]
            if page.data:
                after = page.next_cursor
            elif finished:
                return seen
            else:
                await asyncio.sleep(0.001)

    readers = [asyncio.create_task(reader(org_id, None)), asyncio.create_task(reader(None, platform_start))]
    await asyncio.gather(*(writer(seed) for seed in range(writers)))
    # The readers stop at their first empty page once told the writers are done: not before every write is
    # readable, which a transaction of another database on the server (another checkout's tests) may delay.
    await readable(store, last_tx)
    done.set()
    for seen in await asyncio.wait_for(asyncio.gather(*readers), timeout=120):
        ids = [event.id for event in seen]
        assert len(ids) == writers * per_writer
        assert len(set(ids)) == len(ids), "an event was delivered twice"
        assert set(ids) == set(written), "an event was skipped"
        for stream_id in {stream for stream, _ in written.values()}:
            versions = [written[event.id][1] for event in seen if written[event.id][0] == stream_id]
            assert versions == sorted(versions), "a stream's events arrived out of order"


async def test_a_types_filter_keeps_only_those_types_and_its_cursor_moves_past_the_rest(
    services: Services, store: EventStore, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = uuid.uuid4()
    deactivated = [await provision(store, org_id, f"gone{index}", deactivate=True) for index in range(3)]
    page = await services.feed.read(org_id, None, types=["user.deactivated"])
    assert [event.data for event in page.data] == [public.UserData(user.id) for user in deactivated]
    assert {type(event) for event in page.data} == {public.UserDeactivated}

    # Only events the filter does not want come next: a page with nothing in it, but a cursor past them.
    for index in range(4):
        await provision(store, org_id, f"active{index}")
    empty = await services.feed.read(org_id, page.next_cursor, types=["user.deactivated"])
    assert empty.data == []
    assert empty.next_cursor != page.next_cursor
    everything = await services.feed.read(org_id, page.next_cursor)
    assert empty.next_cursor == everything.next_cursor, "the filtered reader stopped where the log's end is"
    assert [type(event) for event in everything.data] == [public.UserCreated] * 4

    # A stretch of the log longer than a page examines is crossed a bounded page at a time, each page
    # starting where the last one stopped.
    monkeypatch.setattr(event_feed, "EXAMINED_PER_PAGE", 3)
    for index in range(7):
        await provision(store, org_id, f"more{index}")
    late = await provision(store, org_id, "late", deactivate=True)
    cursors = [everything.next_cursor]
    found: list[public.PublicEvent] = []
    while not found:
        page = await services.feed.read(org_id, cursors[-1], types=["user.deactivated"], limit=1)
        found, cursors = page.data, [*cursors, page.next_cursor]
    assert [event.data for event in found] == [public.UserData(late.id)]
    assert len(cursors) == 4, "seven events created and one of each of the late user's: three pages of three"
    assert len(set(cursors)) == len(cursors), "a cursor moved back or stood still"
    # A waiting reader reads on through such a stretch at once: it waits only at the log's end.
    started = time.monotonic()
    waited = await EventFeed(pool, services.notifier, poll_seconds=30).read(
        org_id, everything.next_cursor, types=["user.deactivated"], limit=1, wait_seconds=20
    )
    assert time.monotonic() - started < 5
    assert waited == page


async def test_events_with_no_public_meaning_are_passed_over(services: Services, store: EventStore) -> None:
    org_id = uuid.uuid4()
    group = Group(org_id=str(org_id), project_id=str(uuid.uuid4()), role_id=str(uuid.uuid4()))
    group.link()
    [*_, last] = await store.append(org_id, group.id, 0, group.collect_events(), META)
    await readable(store, last.tx)
    page = await services.feed.read(org_id, None, limit=1)
    assert [type(event) for event in page.data] == [public.GroupLinked]
    assert page.data[0].actor == "token:feed"
    assert page.data[0].request_id == "req-feed"
    assert (await services.feed.read(org_id, page.next_cursor)).data == []


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[2,1,1]").decode().rstrip("="),  # a format this feed never wrote
        base64.urlsafe_b64encode(b"[1,-5,1]").decode().rstrip("="),
        base64.urlsafe_b64encode(b'[1,"1","2"]').decode().rstrip("="),
        encode_cursor(LogPosition(12345, 678))[:-3],  # cut short
    ],
)
async def test_a_cursor_the_feed_did_not_hand_out_is_refused_saying_so(
    services: Services, cursor: str
) -> None:
    with pytest.raises(InvalidFeedRequest, match="not one this feed handed out"):
        await services.feed.read(uuid.uuid4(), cursor)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"types": ["group.created"]}, "Unknown event type group.created"),
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"wait_seconds": 31}, "wait must be between 0 and 30 seconds"),
        ({"wait_seconds": -1}, "wait must be between 0 and 30 seconds"),
    ],
)
async def test_a_request_out_of_range_is_refused_saying_what_is_allowed(
    services: Services, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidFeedRequest, match=message):
        await services.feed.read(uuid.uuid4(), None, **options)  # type: ignore[arg-type]


async def test_a_waiting_reader_is_woken_by_a_commit_in_this_process(
    services: Services, store: EventStore, pool: asyncpg.Pool
) -> None:
    # Polling only every 30 s: an answer within seconds can only come from the commit notifier.
    feed = EventFeed(pool, services.notifier, poll_seconds=30)
    org_id = uuid.uuid4()
    waiting = asyncio.create_task(feed.read(org_id, None, wait_seconds=25))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "it answered before anything was written"
    user = await provision(services.store, org_id, "wakes")  # returns once the log is readable up to it
    readable_at = time.monotonic()
    page = await asyncio.wait_for(waiting, timeout=20)
    assert time.monotonic() - readable_at < 5
    assert [event.data.user_id for event in page.data] == [user.id]  # type: ignore[attr-defined]


async def test_a_waiting_reader_sees_a_commit_made_elsewhere_by_polling(
    pool: asyncpg.Pool, store: EventStore, services: Services
) -> None:
    feed = EventFeed(pool, services.notifier, poll_seconds=0.1)
    org_id = uuid.uuid4()
    waiting = asyncio.create_task(feed.read(org_id, None, wait_seconds=20))
    await asyncio.sleep(0.3)
    await provision(store, org_id, "elsewhere")  # a store with no notifier: as another process's write
    page = await asyncio.wait_for(waiting, timeout=5)
    assert len(page.data) == 1


async def test_a_waiting_reader_with_nothing_new_answers_empty_when_its_wait_ends(
    services: Services, store: EventStore
) -> None:
    org_id, other_org = uuid.uuid4(), uuid.uuid4()
    await provision(store, org_id, "before")
    first = await services.feed.read(org_id, None)
    started = time.monotonic()
    waiting = asyncio.create_task(services.feed.read(org_id, first.next_cursor, wait_seconds=0.8))
    await asyncio.sleep(0.2)
    await provision(services.store, other_org, "not-for-this-reader")  # wakes it; not its organization's
    page = await asyncio.wait_for(waiting, timeout=5)
    assert 0.8 <= time.monotonic() - started < 3
    assert page == FeedPage([], first.next_cursor)


async def test_an_organizations_feed_holds_its_own_events_and_the_platforms_every_ones(
    services: Services, store: EventStore, pool: asyncpg.Pool
) -> None:
    start = await head_cursor(pool)
    first, second = uuid.uuid4(), uuid.uuid4()
    written = []
    for index in range(3):
        for org_id in (first, second):
            written.append((org_id, (await provision(store, org_id, f"u{index}")).id))
    for org_id in (first, second):
        page = await read_all(services.feed, org_id, None)
        assert [(event.org_id, event.data.user_id) for event in page.data] == [  # type: ignore[attr-defined]
            item for item in written if item[0] == org_id
        ]
    # An organization's cursor read in another organization's feed shows that organization's events only.
    crossed = await services.feed.read(second, (await services.feed.read(first, None, limit=1)).next_cursor)
    assert {event.org_id for event in crossed.data} == {second}
    platform = await read_all(services.feed, None, start)
    assert [(event.org_id, event.data.user_id) for event in platform.data] == written  # type: ignore[attr-defined]


async def test_a_sealed_event_carries_its_seal_and_the_last_one_is_the_audit_head(
    services: Services, store: EventStore, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    for index in range(3):
        await provision(store, org_id, f"sealed{index}", deactivate=index == 1)
    assert all(event.seal is None for event in (await services.feed.read(org_id, None)).data)
    async with pool.acquire() as connection:
        await seals.seal_pending(connection)
        head = await seals.head(connection, org_id)
    page = await services.feed.read(org_id, None)
    assert len(page.data) == 4
    assert all(event.seal is not None for event in page.data)
    last = page.data[-1].seal
    assert last is not None
    assert f"{last.position}:{last.hash}" == str(head)
