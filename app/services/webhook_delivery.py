"""Delivering webhooks: every event of an endpoint's types, in log order, at least once, signed as Standard
Webhooks says, and a failing endpoint holding back nobody but itself.

How it fits the runner (eventstore/runner.py). The runner's consumers each hold one position, and their
work is a database transaction in which that position moves. A webhook's work is an HTTP request, which no
transaction can contain and which must not run inside one (a transaction that has taken an xid and waits on
a receiver would hold back `pg_snapshot_xmin`, and with it every reader of the log). And one position for
all endpoints would make the slowest receiver everyone's pace. So the dispatcher is a consumer of its own
kind, run next to the runner (app/bootstrap.py starts both), on the runner's machinery:
- one process at a time runs it: it holds the runner's advisory lock for the consumer name "webhooks" on a
  connection of its own, and stands by while another has it (eventstore/single_active.py, which the
  retention sweep runs on too);
- it is woken as the runner's consumers are: by this process's commits (CommitNotifier) and by NOTIFY on
  the log's channel from the others, and it polls as well;
- it reads the log in the runner's commit-safe order, (tx, position) below the snapshot's xmin (the
  statement of eventstore/log_reader.read_log, narrowed to one organization by its index on
  (org_id, tx, position)), so an event that commits late is never skipped;
- it fans out: one task per active endpoint, each with its own position in `webhook_endpoints` (and its own
  HTTP connection, app/infrastructure/webhook_http.WebhookSender). A task
  reads the events after its position, sends the first one the endpoint wants (nothing is held in the
  transaction meanwhile), then records the attempt and moves the position past the event, or counts the
  failure and sets the next attempt's time, in one transaction. That row lock also checks that nobody
  moved the position meanwhile (a replay): if so the attempt is recorded and the position left alone.

What follows:
- At least once: killed between the receiver's 2xx and the commit, the event is sent again on restart, with
  the same `webhook-id` (the feed's event id, from the event itself), so receivers de-duplicate. Nothing is
  lost: the position only moves past an event in the transaction that records its successful delivery.
- In order per endpoint: an endpoint's next event is not sent before its previous one succeeded.
- A failing endpoint waits out its retry schedule (SCIMLEDGER_WEBHOOK_RETRY_SCHEDULE, each delay with
  ±20 % jitter so that endpoints failing together do not retry together) without holding any other: its
  task sleeps, the others go on. After the last retry it is disabled with the reason; resume or replay
  starts it again.
- The schedule survives restarts: the next attempt's time is in the table, not in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import asyncpg
import msgspec
from standardwebhooks import Webhook

from app.infrastructure.webhook_http import Answer, WebhookSender
from app.infrastructure.webhook_keys import WebhookKeys
from app.services import webhook_delivery_sql as sql
from app.services.webhooks import WEBHOOKS_CHANNEL, wants, webhook_id_of
from eventstore.notify import NOTIFY_CHANNEL, CommitNotifier
from eventstore.personal_data import readable
from eventstore.pool import Connection
from eventstore.records import LogPosition, RecordedEvent, record_of
from eventstore.runner import ConsumerActivity, RunnerOptions, backoff
from eventstore.single_active import SingleActive

log = logging.getLogger("scimledger.webhooks")

# The body of the delivery of an event, or None when the event is not published; and its public type.
# The body of an event's delivery, anything msgspec encodes (the feed's PublicEvent); None if not delivered.
Render = Callable[[RecordedEvent], object | None]
EventTypeOf = Callable[[RecordedEvent], str | None]

DISPATCHER_NAME = "webhooks"
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class DeliveryOptions:
    retry_delays: tuple[float, ...]
    timeout_seconds: float
    allow_private: bool
    batch_size: int = 100
    poll_seconds: float = 1.0
    standby_seconds: float = 2.0
    jitter: float = 0.2


class _Pending(msgspec.Struct, frozen=True):
    """The next event an endpoint wants, and the last event before it that it does not."""

    event: RecordedEvent
    public_type: str
    body: bytes
    skipped_to: LogPosition


@dataclass
class _EndpointTask:
    task: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # new events may be in the log
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # the endpoint's row may have changed


class WebhookDispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        keys: WebhookKeys,
        render: Render,
        event_type_of: EventTypeOf,
        options: DeliveryOptions,
        notifier: CommitNotifier | None = None,
    ) -> None:
        self._pool = pool
        # The pool is the process's own (in `serve`, the requests'): however many endpoints are active,
        # deliveries hold at most half of it, and each only for a statement or a short transaction.
        self._connections = asyncio.Semaphore(max(1, pool.get_max_size() // 2))
        self._keys = keys
        self._render = render
        self._event_type_of = event_type_of
        self.options = options
        self._notifier = notifier
        self._tasks: dict[tuple[uuid.UUID, uuid.UUID], _EndpointTask] = {}
        self._endpoints_changed = asyncio.Event()
        self._single = SingleActive(DISPATCHER_NAME, self._dispatch, log, options.standby_seconds)

    @property
    def state(self) -> ConsumerActivity:
        return self._single.state

    async def run(self, dsn: str) -> None:
        """Deliver until cancelled, whenever this process holds the dispatcher's lock."""
        await self._single.run(dsn)

    async def _dispatch(self, connection: asyncpg.Connection) -> None:
        await connection.add_listener(NOTIFY_CHANNEL, self._on_events)
        await connection.add_listener(WEBHOOKS_CHANNEL, self._on_endpoints)
        unsubscribe = self._notifier.subscribe(self._on_events) if self._notifier is not None else None
        try:
            while True:
                self._endpoints_changed.clear()
                # Also proves the lock's connection alive: if it is gone, so is the lock, and another
                # process may be delivering; this one stops (the finally below) and starts over.
                active = await connection.fetch(
                    "SELECT org_id, endpoint_id FROM webhook_endpoints WHERE state = 'active'"
                )
                self._single.working()
                self._supervise({(row["org_id"], row["endpoint_id"]) for row in active})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._endpoints_changed.wait(), self.options.poll_seconds)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            await self._stop_all()

    def _on_events(self, *_: object) -> None:
        for running in self._tasks.values():
            running.arrived.set()

    def _on_endpoints(self, *_: object) -> None:
        self._endpoints_changed.set()
        for running in self._tasks.values():
            running.changed.set()
            running.arrived.set()

    def _supervise(self, active: set[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """One task per active endpoint. A task ends by itself when its endpoint stops being active."""
        for key, running in list(self._tasks.items()):
            if running.task is None or running.task.done():
                del self._tasks[key]
        for key in active - self._tasks.keys():
            running = _EndpointTask()
            running.task = asyncio.create_task(self._serve(*key, running), name=f"webhook:{key[1]}")
            self._tasks[key] = running

    async def _stop_all(self) -> None:
        tasks = [running.task for running in self._tasks.values() if running.task is not None]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, org_id: uuid.UUID, endpoint_id: uuid.UUID, me: _EndpointTask) -> None:
        """Deliver one endpoint's events until it is no longer active, over a connection of its own (see
        WebhookSender: another endpoint's slow receiver never holds it up), closed when it ends."""
        sender = WebhookSender(self.options.timeout_seconds, self.options.allow_private)
        try:
            await self._deliver(org_id, endpoint_id, sender, me)
        finally:
            await sender.aclose()

    async def _deliver(
        self, org_id: uuid.UUID, endpoint_id: uuid.UUID, sender: WebhookSender, me: _EndpointTask
    ) -> None:
        failures = 0
        while True:
            me.arrived.clear()
            me.changed.clear()
            try:
                outcome = await self._step(org_id, endpoint_id, sender)
                failures = 0
            except Exception as error:  # the database, mostly; the endpoint's own failures are answers
                failures += 1
                log.warning("webhook %s: %s; retrying", endpoint_id, type(error).__name__)
                await asyncio.sleep(backoff(failures, RunnerOptions()))
                continue
            if outcome is None:
                return  # not active any more (paused, disabled, deleted)
            if outcome == 0:
                continue  # more to do now
            # Idle: until events arrive (or the poll, in case a NOTIFY was lost). Waiting for a retry: until it
            # is due or the endpoint changes (resumed, replayed); the row is read again either way.
            idle = outcome == float("inf")
            wake = me.arrived if idle else me.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.options.poll_seconds if idle else min(outcome, 30))

    async def _step(self, org_id: uuid.UUID, endpoint_id: uuid.UUID, sender: WebhookSender) -> float | None:
        """Deliver the endpoint's next events if it has some and they are due. Returns None when the endpoint is
        not active, 0 when there may be more to do at once, the seconds until a retry is due, or infinity when
        it has caught up."""
        async with self._connections, self._pool.acquire() as connection:
            endpoint = await connection.fetchrow(sql.ENDPOINT, org_id, endpoint_id)
            if endpoint is None or endpoint["state"] != "active":
                return None
            if endpoint["wait"] > 0:
                return float(endpoint["wait"])
            start = LogPosition(endpoint["tx"], endpoint["position"])
            rows = await connection.fetch(sql.READ_ORG_LOG, org_id, *start, self.options.batch_size)
            events = await readable(connection, [record_of(row) for row in rows])
        if not events:
            return float("inf")
        signers = [
            Webhook(self._keys.decrypt(secret))
            for secret in (endpoint["secret"], endpoint["previous_secret"])
            if secret
        ]
        # The batch's events one after the other, without reading the endpoint again: each success's
        # transaction says whether the endpoint is still active at the position this loop expects, and
        # unchanged since it was read (else the rest would go to an old URL, types or secret).
        position = start
        for pending in self._wanted(events, start, endpoint["event_types"]):
            answer = await sender.post(endpoint["url"], pending.body, _headers(pending, signers))
            if not answer.succeeded:
                await self._record_failure(org_id, endpoint_id, position, pending, answer, endpoint)
                return 0
            if not await self._record_success(org_id, endpoint_id, position, pending, answer, endpoint):
                return 0  # paused, replayed, changed or deleted meanwhile: the row decides what is next
            position = pending.event.log_position
        if position != events[-1].log_position:  # the batch ends with events it does not want
            async with self._connections:
                await self._pool.execute(
                    sql.MOVE, org_id, endpoint_id, *events[-1].log_position, *position, endpoint["updated_at"]
                )
        return 0 if len(events) == self.options.batch_size else float("inf")

    def _wanted(
        self, events: list[RecordedEvent], start: LogPosition, event_types: list[str]
    ) -> Iterator[_Pending]:
        """The events the endpoint wants, in order, each with the last event before it that it does not."""
        skipped_to = start
        for event in events:
            public_type = self._event_type_of(event)
            body = (
                self._render(event) if public_type is not None and wants(event_types, public_type) else None
            )
            if public_type is not None and body is not None:
                yield _Pending(event, public_type, _encoder.encode(body), skipped_to)
            skipped_to = event.log_position

    async def _record_success(
        self,
        org_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        expected: LogPosition,
        pending: _Pending,
        answer: Answer,
        endpoint: asyncpg.Record,
    ) -> bool:
        """Record the attempt and move the position past the event, in one statement (so one transaction and one
        round trip); whether the endpoint is still active at that position, as `endpoint` read it."""
        event = pending.event
        async with self._connections:
            row = await self._pool.fetchrow(
                sql.RECORD_SUCCESS,
                org_id,
                endpoint_id,
                webhook_id_of(event),
                event.position,
                pending.public_type,
                _attempted_at(answer),
                answer.duration_ms,
                answer.status,
                *event.log_position,
                *expected,
            )
        return (
            row is not None
            and row["state"] == "active"
            and (row["updated_at"], row["url"], row["event_types"])
            == (endpoint["updated_at"], endpoint["url"], endpoint["event_types"])
        )

    async def _record_failure(
        self,
        org_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        expected: LogPosition,
        pending: _Pending,
        answer: Answer,
        endpoint: asyncpg.Record,
    ) -> None:
        """The attempt, and the next attempt's time or the endpoint disabled, in one transaction."""
        event = pending.event
        async with self._connections, self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(sql.LOCK_ENDPOINT, org_id, endpoint_id)
            if row is None:
                return  # deleted meanwhile, with its delivery log
            attempt = row["attempts"] + 1
            await connection.execute(
                sql.RECORD_ATTEMPT,
                org_id,
                endpoint_id,
                webhook_id_of(event),
                event.position,
                pending.public_type,
                attempt,
                _attempted_at(answer),
                answer.duration_ms,
                answer.status,
                answer.error,
                False,
            )
            if LogPosition(row["tx"], row["position"]) != expected:
                return  # replayed meanwhile: the attempt happened, the position is the replay's
            if row["updated_at"] != endpoint["updated_at"]:
                return  # changed meanwhile (a new URL, perhaps): the old settings' failure counts for nothing
            if attempt > len(self.options.retry_delays):
                await self._disable(connection, org_id, endpoint_id, pending, attempt, answer)
            else:
                delay = self.options.retry_delays[attempt - 1]
                delay *= 1 + random.uniform(-self.options.jitter, self.options.jitter)
                await connection.execute(
                    sql.RETRY_LATER, org_id, endpoint_id, *pending.skipped_to, attempt, delay
                )

    async def _disable(
        self,
        connection: Connection,
        org_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        pending: _Pending,
        attempts: int,
        answer: Answer,
    ) -> None:
        reason = (
            f"Gave up delivering {webhook_id_of(pending.event)} ({pending.public_type}) after {attempts} "
            f"attempts; the last one: {answer.error}. Later events wait behind it. Fix the receiver, then "
            "resume the endpoint (or replay from an earlier event)."
        )
        await connection.execute(sql.DISABLE, org_id, endpoint_id, *pending.skipped_to, attempts, reason)
        log.warning("webhook %s disabled: %s", endpoint_id, reason)


def _headers(pending: _Pending, signers: list[Webhook]) -> dict[str, str]:
    message_id = webhook_id_of(pending.event)
    now = datetime.datetime.now(datetime.UTC)
    text = pending.body.decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        # One signature per secret in use: after a rotation, the new one's and the previous one's.
        "webhook-signature": " ".join(signer.sign(message_id, now, text) for signer in signers),
        "content-type": "application/json",
        "user-agent": "scimledger-webhooks",
    }


def _attempted_at(answer: Answer) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(milliseconds=answer.duration_ms)
