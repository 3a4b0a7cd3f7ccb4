"""Tamper evidence: a hash chain over each organization's events, in log order.

seal(n) = SHA-256(seal(n-1) || content(event n)), with seal(0) = 32 zero bytes, where content is an
unambiguous encoding of everything the log stores for the event, its position and transaction included.
Editing, deleting, inserting or reordering an event breaks the chain from that event on. Someone who can
also rewrite this table (a database superuser) could recompute the seals; a head exported with
`scimledger audit head` and kept outside the database catches that, and an end cut off, too.

The seals are evidence: the database refuses to update, delete or truncate them (migration 0011), the
runner only appends, and nothing rebuilds them, since a rebuild would seal whatever the log holds now,
edits included. Events the sealer cannot reach are evidence too: the runner reads below the oldest running
transaction (see eventstore/log_reader.py), so an event whose `tx` no transaction has committed would stay
unsealed forever while a rebuild of the SCIM projection applied it. `verify` fails on such an event, on an
event the sealer has passed without a seal, and on one left unsealed longer than a bound.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from eventstore.consumers import process_batch
from eventstore.pool import Connection
from eventstore.positions import ensure_position
from eventstore.records import EVENT_COLUMNS, LogPosition, RecordedEvent
from eventstore.store import Transaction

SEALER = "audit.seals"
GENESIS = bytes(32)
_encoder = msgspec.json.Encoder()


def content(event: RecordedEvent) -> bytes:
    return _encoder.encode(
        [
            event.position,
            event.tx,
            str(event.org_id),
            str(event.stream_id),
            event.version,
            event.type,
            event.schema_version,
            event.payload,
            event.occurred_at.isoformat(),
            event.recorded_at.isoformat(),
            event.actor,
            event.request_id,
        ]
    )


def chain(previous: bytes, event: RecordedEvent) -> bytes:
    return hashlib.sha256(previous + content(event)).digest()


class Sealer:
    """The runner's consumer that extends every organization's chain. Not a projection: it has no reset, so
    no rebuild can drop the seals and re-seal an edited log (see `seal_pending`)."""

    event_types: frozenset[str] | None = None
    # Seals cover the payloads as stored, personal values encrypted: never decrypted for it (see
    # eventstore.consumers.process_batch), so that the chain still verifies after an erasure.
    reads_stored_payloads = True

    def __init__(self, name: str = SEALER) -> None:
        self.name = name

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        connection = transaction.connection
        heads: dict[uuid.UUID, bytes] = {}
        rows = []
        for event in events:
            previous = heads.get(event.org_id)
            if previous is None:
                previous = (
                    await connection.fetchval(
                        "SELECT seal FROM audit_seals WHERE org_id = $1 ORDER BY tx DESC, position DESC LIMIT 1",
                        event.org_id,
                    )
                    or GENESIS
                )
            seal = chain(previous, event)
            heads[event.org_id] = seal
            rows.append((event.org_id, event.position, event.tx, seal))
        await connection.copy_records_to_table(
            "audit_seals", records=rows, columns=["org_id", "position", "tx", "seal"]
        )


async def seal_pending(connection: Connection, batch_size: int = 5000) -> int:
    """Seal what the runner has not sealed yet, as its sealer would; returns the events sealed. Existing seals
    are kept: this is what `projections rebuild audit.seals` does once `verify` has passed."""
    sealer = Sealer()
    await ensure_position(connection, sealer.name)
    sealed = 0
    while (batch := await process_batch(connection, sealer, batch_size)).examined:
        sealed += len(batch.events)
    return sealed


@dataclass(frozen=True, slots=True)
class Head:
    """The latest seal of an organization's chain: what an auditor keeps outside the database."""

    position: int
    seal: bytes

    def __str__(self) -> str:
        return f"{self.position}:{self.seal.hex()}"

    @classmethod
    def parse(cls, text: str) -> Head:
        position, _, seal = text.strip().partition(":")
        try:
            return cls(int(position), bytes.fromhex(seal))
        except ValueError as error:
            raise ValueError(
                f"'{text}' is not a head: expected POSITION:HEX as printed by 'audit head'."
            ) from error


async def head(connection: Connection, org_id: uuid.UUID) -> Head | None:
    row = await connection.fetchrow(
        "SELECT position, seal FROM audit_seals WHERE org_id = $1 ORDER BY tx DESC, position DESC LIMIT 1",
        org_id,
    )
    return Head(row["position"], bytes(row["seal"])) if row else None


@dataclass(frozen=True, slots=True)
class Verdict:
    org_id: uuid.UUID
    checked: int  # events whose seal matched
    unsealed: int  # events after the last seal, not yet sealed by the runner
    problem: str | None = None  # the first break, naming the event
    # The problem is an event left unsealed too long: the runner may only have been stopped, so it is not a
    # proof of tampering, but the event is not covered by the chain either.
    overdue: bool = False

    @property
    def intact(self) -> bool:
        return self.problem is None

    @property
    def tampered(self) -> bool:
        return self.problem is not None and not self.overdue


@dataclass(frozen=True, slots=True)
class _Horizon:
    """What the verifying transaction's snapshot says about the log: which transaction ids had committed,
    the time, and how far the sealer had got."""

    xmin: int
    xmax: int
    running: frozenset[int]
    now: datetime.datetime
    sealed_up_to: LogPosition | None

    def committed(self, tx: int) -> bool:
        # pg_visible_in_snapshot's rule. A row this snapshot sees was written by a transaction that committed
        # before it began, and `tx` is that transaction's id (its column default): so a visible event whose
        # `tx` the snapshot does not count as committed was written with a `tx` chosen by hand.
        return tx < self.xmin or (tx < self.xmax and tx not in self.running)


_HORIZON = """
SELECT pg_current_snapshot()::text AS snapshot, now() AS now,
       (SELECT tx FROM consumer_positions WHERE name = $1) AS sealed_tx,
       (SELECT position FROM consumer_positions WHERE name = $1) AS sealed_position
"""


async def _horizon(connection: Connection) -> _Horizon:
    row = await connection.fetchrow(_HORIZON, SEALER)
    assert row is not None  # a SELECT without FROM returns its one row
    xmin, xmax, running = row["snapshot"].split(":")
    sealed = (
        LogPosition(int(row["sealed_tx"]), row["sealed_position"]) if row["sealed_tx"] is not None else None
    )
    return _Horizon(
        int(xmin), int(xmax), frozenset(int(tx) for tx in running.split(",") if tx), row["now"], sealed
    )


def _describe(event: RecordedEvent) -> str:
    return (
        f"event {event.position} ({event.type}, stream {event.stream_id} version {event.version}, "
        f"recorded {event.recorded_at.isoformat()})"
    )


def _never_sealable(event: RecordedEvent, next_tx: int) -> str:
    return (
        f"{_describe(event)} carries transaction id {event.tx}, which had not committed when this check "
        f"began (the next transaction id was {next_tx}): no transaction of the service wrote it. It was "
        "inserted behind the service's back, and the runner will never seal it."
    )


# An index range on (tx, position) from the snapshot's xmin: every event below it is committed.
_UNCOMMITTED = f"""
SELECT {EVENT_COLUMNS}, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_tx FROM events
WHERE tx >= pg_snapshot_xmin(pg_current_snapshot()) AND NOT pg_visible_in_snapshot(tx, pg_current_snapshot())
ORDER BY tx, position
LIMIT 1
"""


async def never_sealable(connection: Connection) -> str | None:
    """The first event in the whole log, any organization's, that the runner can never seal, described; None
    when there is none. Such an event must grant nothing: a rebuild refuses to apply it."""
    row = await connection.fetchrow(_UNCOMMITTED)
    if row is None:
        return None
    return _never_sealable(RecordedEvent(*list(row.values())[:-1]), row["next_tx"])


async def verify(
    connection: Connection,
    org_id: uuid.UUID,
    expected_head: Head | None = None,
    *,
    max_unsealed_age: datetime.timedelta,
) -> Verdict:
    """Recompute `org_id`'s chain from its events and compare it with the seals, in log order.

    Runs in the caller's transaction (cursors need one), under a repeatable-read snapshot so that the
    events, the seals and the sealer's position are read as of the same instant. Past the last seal, every
    event must be one the runner will seal: committed, not yet passed by the sealer, and recorded less than
    `max_unsealed_age` ago.
    """
    horizon = await _horizon(connection)
    events = connection.cursor(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1 ORDER BY tx, position", org_id, prefetch=2000
    ).__aiter__()
    seals = connection.cursor(
        "SELECT position, tx, seal FROM audit_seals WHERE org_id = $1 ORDER BY tx, position",
        org_id,
        prefetch=2000,
    ).__aiter__()
    computed = GENESIS
    checked = unsealed = 0
    head_seen = expected_head is None

    async def following(cursor: AsyncIterator[asyncpg.Record]) -> asyncpg.Record | None:
        try:
            return await anext(cursor)
        except StopAsyncIteration:
            return None

    def broken(problem: str, overdue: bool = False) -> Verdict:
        return Verdict(org_id, checked, unsealed, problem, overdue)

    event_row = await following(events)
    seal_row = await following(seals)
    while event_row is not None:
        event = RecordedEvent(*event_row)
        if event.tx >= horizon.xmin and not horizon.committed(event.tx):  # below xmin: committed
            return broken(_never_sealable(event, horizon.xmax))
        if seal_row is None:
            if horizon.sealed_up_to is not None and event.log_position <= horizon.sealed_up_to:
                return broken(
                    f"{_describe(event)} has no seal, though the sealer has passed it (it had sealed up to "
                    f"position {horizon.sealed_up_to.position}): its seal was deleted, or the sealer parked "
                    "it (see 'scimledger projections status')."
                )
            age = horizon.now - event.recorded_at
            if age > max_unsealed_age:
                return broken(
                    f"{_describe(event)} is still not sealed {_duration(age)} after it was recorded, past the "
                    f"limit of {_duration(max_unsealed_age)} (SCIMLEDGER_AUDIT_MAX_UNSEALED_SECONDS): the "
                    "runner has been stopped or behind that long (see 'scimledger projections status'), or "
                    "the event's seal was deleted. Until it is sealed, nothing proves it untouched.",
                    overdue=True,
                )
            unsealed += 1  # the runner has not sealed it yet
            computed = chain(computed, event)
        else:
            sealed_position, sealed_tx, stored = seal_row["position"], seal_row["tx"], bytes(seal_row["seal"])
            if (event.tx, event.position) < (sealed_tx, sealed_position):
                return broken(
                    f"{_describe(event)} was inserted: it sits inside the sealed history but was never "
                    "sealed."
                )
            if (event.tx, event.position) > (sealed_tx, sealed_position):
                return broken(
                    f"the event sealed at position {sealed_position} was deleted or moved: the log no "
                    f"longer has it where it was sealed; the next event is {_describe(event)}."
                )
            computed = chain(computed, event)
            if computed != stored:
                return broken(
                    f"{_describe(event)} was edited, or an event before it was removed together with its "
                    "seal: its content no longer matches its seal."
                )
            checked += 1
            seal_row = await following(seals)
        if expected_head is not None and event.position == expected_head.position:
            if computed != expected_head.seal:
                return broken(
                    f"the history up to {_describe(event)} was rewritten: it no longer leads to the head "
                    f"kept outside the database ({expected_head})."
                )
            head_seen = True
        event_row = await following(events)
    if seal_row is not None:
        return broken(
            f"the event sealed at position {seal_row['position']} was deleted: it is missing from the log."
        )
    if not head_seen:
        assert expected_head is not None
        return broken(
            f"the log was cut off: it ends before position {expected_head.position}, where the head kept "
            "outside the database was taken."
        )
    return Verdict(org_id, checked, unsealed)


def _duration(span: datetime.timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
