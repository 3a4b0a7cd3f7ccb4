"""The port by which a read model is written with the events: registered once with the store, called by it
in the transaction of every append (see EventStore), so that no writer can append without it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import msgspec
from eventsourcing.domain import Aggregate

from eventstore.pool import Connection
from eventstore.records import RecordedEvent


class FollowUp(msgspec.Struct, frozen=True):
    """A write that rides in the append's own statement, such as the inline projection's row.

    Its SQL may read the `position` and `version` of the rows just appended from the CTE `appended`, and must
    change nothing when that is empty (a lost race): the statement is its own transaction when no explicit
    one is open. Placeholders are numbered from $1, as if it stood alone. `refusal` says what a unique
    violation of its own means (a taken userName), as the projection's own statements say it.
    """

    sql: str
    args: tuple[Any, ...]
    refusal: Callable[[asyncpg.UniqueViolationError], Exception] | None = None


class InlineProjection(Protocol):
    """A read model written in the transaction of every append, registered once with the store (EventStore).

    The store calls it, so no writer can append without it: its rows are visible to the next read as soon as
    the append commits (read-your-writes), and its unique indexes refuse an append that would break them.
    """

    def riding(self, org_id: uuid.UUID, aggregates: Sequence[Aggregate]) -> FollowUp | None:
        """The whole projection of these aggregates' pending events as one write that rides in the append's
        statement (no round trip of its own), or None to be called on `project` after the append instead."""
        ...

    async def project(
        self, connection: Connection, recorded: Sequence[RecordedEvent], aggregates: Mapping[uuid.UUID, Any]
    ) -> None:
        """Project `recorded`, just appended on `connection`; `aggregates` holds, by id, the aggregates the
        events came from, as they stand after them, where the writer saved aggregates (empty for raw events)."""
        ...
