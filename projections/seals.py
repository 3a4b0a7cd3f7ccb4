"""Tamper evidence: a hash chain over each organization's events, in log order.

seal(n) = SHA-256(seal(n-1) || content(event n)), with seal(0) = 32 zero bytes, where content is an
unambiguous encoding of everything the log stores for the event, its position and transaction included.
Editing, deleting, inserting or reordering an event breaks the chain from that event on. Someone who can
also rewrite this table (a database superuser) could recompute the seals; a head exported with
`scimledger audit head` and kept outside the database catches that, and an end cut off, too.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from eventstore.pool import Connection
from eventstore.store import EVENT_COLUMNS, RecordedEvent, Transaction

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
    event_types: frozenset[str] | None = None
    tables = ("audit_seals",)

    def __init__(self, schema: str = "public", name: str = "audit.seals") -> None:
        self.schema = schema
        self.name = name

    def relocated(self, schema: str, name: str) -> Sealer:
        return Sealer(schema, name)

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        connection = transaction.connection
        heads: dict[uuid.UUID, bytes] = {}
        rows = []
        for event in events:
            previous = heads.get(event.org_id)
            if previous is None:
                previous = (
                    await connection.fetchval(
                        f"SELECT seal FROM {self.schema}.audit_seals WHERE org_id = $1 "
                        "ORDER BY tx DESC, position DESC LIMIT 1",
                        event.org_id,
                    )
                    or GENESIS
                )
            seal = chain(previous, event)
            heads[event.org_id] = seal
            rows.append((event.org_id, event.position, event.tx, seal))
        await connection.copy_records_to_table(
            "audit_seals", schema_name=self.schema, records=rows, columns=["org_id", "position", "tx", "seal"]
        )

    async def reset(self, connection: Connection) -> None:
        await connection.execute(f"DELETE FROM {self.schema}.audit_seals")


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

    @property
    def intact(self) -> bool:
        return self.problem is None


def _describe(event: RecordedEvent) -> str:
    return (
        f"event {event.position} ({event.type}, stream {event.stream_id} version {event.version}, "
        f"recorded {event.recorded_at.isoformat()})"
    )


async def verify(connection: Connection, org_id: uuid.UUID, expected_head: Head | None = None) -> Verdict:
    """Recompute `org_id`'s chain from its events and compare it with the seals, in log order.

    Runs in the caller's transaction (cursors need one), under a repeatable-read snapshot so that the
    events and the seals are read as of the same instant.
    """
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

    event_row = await following(events)
    seal_row = await following(seals)
    while event_row is not None:
        event = RecordedEvent(*event_row)
        if seal_row is None:
            unsealed += 1  # the runner has not sealed it yet
            computed = chain(computed, event)
        else:
            sealed_position, sealed_tx, stored = seal_row["position"], seal_row["tx"], bytes(seal_row["seal"])
            if (event.tx, event.position) < (sealed_tx, sealed_position):
                return Verdict(
                    org_id,
                    checked,
                    unsealed,
                    f"{_describe(event)} was inserted: it sits inside the sealed history but was never "
                    "sealed.",
                )
            if (event.tx, event.position) > (sealed_tx, sealed_position):
                return Verdict(
                    org_id,
                    checked,
                    unsealed,
                    f"the event sealed at position {sealed_position} was deleted or moved: the log no "
                    f"longer has it where it was sealed; the next event is {_describe(event)}.",
                )
            computed = chain(computed, event)
            if computed != stored:
                return Verdict(
                    org_id,
                    checked,
                    unsealed,
                    f"{_describe(event)} was edited, or an event before it was removed together with its "
                    "seal: its content no longer matches its seal.",
                )
            checked += 1
            seal_row = await following(seals)
        if expected_head is not None and event.position == expected_head.position:
            if computed != expected_head.seal:
                return Verdict(
                    org_id,
                    checked,
                    unsealed,
                    f"the history up to {_describe(event)} was rewritten: it no longer leads to the head "
                    f"kept outside the database ({expected_head}).",
                )
            head_seen = True
        event_row = await following(events)
    if seal_row is not None:
        return Verdict(
            org_id,
            checked,
            unsealed,
            f"the event sealed at position {seal_row['position']} was deleted: it is missing from the log.",
        )
    if not head_seen:
        assert expected_head is not None
        return Verdict(
            org_id,
            checked,
            unsealed,
            f"the log was cut off: it ends before position {expected_head.position}, where the head kept "
            "outside the database was taken.",
        )
    return Verdict(org_id, checked, unsealed)
