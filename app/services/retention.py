"""Retention of personal data: an organization's policy (off by default) of how many days after a user was
deleted or removed from the organization their data is kept, and the sweep that erases them when that time
is up, recorded exactly as an admin's erasure is (app/services/erasure.py), with the actor `retention` and
the policy as the reason.

The sweep runs beside the runner, as the webhook dispatcher does (app/bootstrap.py starts both), on the same
machinery (eventstore/single_active.py): one process at a time holds the runner's advisory lock named
"retention" on a connection of its own, and the others stand by, so two workers never erase the same user at
once (the erasure would refuse the second anyway: the user's stream is locked, and an erased user is erased
once). Each sweep asks each organization with a policy which of its users left before the policy's horizon
and were not erased (erasure.left_not_erased: two partial indexes of migration 0028 answer it), then lets
each user's aggregate decide: a user who came back since (an activation, an admin's restore) is no longer
due.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Annotated

import asyncpg
import msgspec

from app.services.erasure import ErasureService, LeftKey, left_not_erased
from domain.errors import DomainError, NotErasable, NotFound
from domain.users import RETENTION_ACTOR, User
from eventstore.pool import CONNECTION_LOST, Connection
from eventstore.records import Metadata
from eventstore.runner import ConsumerActivity
from eventstore.single_active import SingleActive
from eventstore.store import EventStore

log = logging.getLogger("scimledger.retention")

SWEEPER_NAME = "retention"
MAX_RETENTION_DAYS = 36500
# A policy is stated in days; a sweep every few minutes erases a due user well within the day they fall due.
SWEEP_SECONDS = 300.0

Clock = Callable[[], datetime.datetime]

RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=MAX_RETENTION_DAYS)]


class RetentionPolicy(msgspec.Struct, frozen=True):
    """`days`: how long after leaving a user's personal data is kept; None: until an admin erases it."""

    days: RetentionDays | None = None

    def reason(self) -> str:
        """What an erasure by this policy records as its reason."""
        return (
            f"retention policy: personal data is kept {self.days} day(s) after a user is deleted or removed "
            "from the organization"
        )

    def described(self) -> str:
        if self.days is None:
            return "off: personal data is kept until an admin erases it"
        return f"{self.days} day(s) after a user is deleted or removed, their personal data is erased"


async def policy_of(connection: Connection, org_id: uuid.UUID) -> RetentionPolicy:
    days = await connection.fetchval(
        "SELECT personal_data_retention_days FROM orgs WHERE org_id = $1", org_id
    )
    return RetentionPolicy(days)


async def set_policy(connection: Connection, org_id: uuid.UUID, policy: RetentionPolicy) -> RetentionPolicy:
    if policy.days is not None and not 1 <= policy.days <= MAX_RETENTION_DAYS:
        raise DomainError(f"A retention period is 1 to {MAX_RETENTION_DAYS} days, or off.")
    updated = await connection.fetchval(
        "UPDATE orgs SET personal_data_retention_days = $2 WHERE org_id = $1 RETURNING org_id",
        org_id,
        policy.days,
    )
    if updated is None:
        raise NotFound(f"No organization {org_id}.")
    return policy


# Every organization with a policy: the sweep's one statement across organizations (docs/scaling.md), a
# read of the small orgs table.
_POLICIES = (
    "SELECT org_id, personal_data_retention_days FROM orgs WHERE personal_data_retention_days IS NOT NULL"
)
# Candidates are read this many at a time, each batch's aggregates then deciding one by one.
_BATCH = 500


class RetentionSweeper:
    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        store: EventStore,
        erasure: ErasureService,
        sweep_seconds: float = SWEEP_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self._pool = pool
        self._store = store
        self._erasure = erasure
        self.sweep_seconds = sweep_seconds
        # A test passes a clock ahead of the database's: the policy's days then pass at once.
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._single = SingleActive(SWEEPER_NAME, self._sweep_while_held, log)

    @property
    def state(self) -> ConsumerActivity:
        return self._single.state

    async def sweep(self) -> list[uuid.UUID]:
        """Erase every user whose organization's policy says their time is up; the users erased."""
        now = self._clock()
        erased: list[uuid.UUID] = []
        async with self._pool.acquire() as connection:
            policies = await connection.fetch(_POLICIES)
        for org_id, days in policies:
            policy = RetentionPolicy(days)
            horizon = now - datetime.timedelta(days=days)
            after: LeftKey | None = None
            while True:
                # The users who left before the horizon and were not erased (app/services/erasure.py).
                async with self._pool.acquire() as connection:
                    candidates = await left_not_erased(connection, org_id, horizon, _BATCH, after)
                for candidate in candidates:
                    try:
                        if await self._erase_if_due(org_id, candidate.user_id, policy, horizon):
                            erased.append(candidate.user_id)
                    except CONNECTION_LOST:
                        raise  # the database is gone for everyone: the sweep backs off and starts again
                    except Exception as error:
                        # Ids and the error's type only, no traceback: its message may quote what it failed on.
                        log.error(  # noqa: TRY400
                            "retention: user %s of org %s not erased, tried again next sweep: %s",
                            candidate.user_id,
                            org_id,
                            type(error).__name__,
                        )
                if len(candidates) < _BATCH:
                    break
                after = candidates[-1]
        return erased

    async def _erase_if_due(
        self, org_id: uuid.UUID, user_id: uuid.UUID, policy: RetentionPolicy, horizon: datetime.datetime
    ) -> bool:
        async with self._store.autocommit() as transaction:
            user = (await transaction.load(org_id, [user_id])).get(user_id)
        if not isinstance(user, User) or user.erased:
            return False
        left_on = user.left_on
        if left_on is None or left_on > horizon:
            return False  # back in the organization since, or left again more recently
        try:
            await self._erasure.erase(
                org_id, user_id, policy.reason(), Metadata(actor=RETENTION_ACTOR), reason_by_policy=True
            )
        except NotErasable as refusal:
            # Came back between the read above and the erasure's own, or erased meanwhile: not due now.
            log.info("retention: user %s of org %s not erased: %s", user_id, org_id, type(refusal).__name__)
            return False
        log.info("retention: erased user %s of org %s", user_id, org_id)
        return True

    async def run(self, dsn: str) -> None:
        """Sweep every `sweep_seconds` until cancelled, whenever this process holds the sweeper's lock."""
        await self._single.run(dsn)

    async def _sweep_while_held(self, connection: asyncpg.Connection) -> None:
        while True:
            await self.sweep()
            self._single.working()
            await asyncio.sleep(self.sweep_seconds)
            # Proves the lock's connection alive: if it is gone, so is the lock.
            await connection.fetchval("SELECT 1")
