"""Where auditors' reads run, and how fresh what they read is: a streaming replica when one is configured
(SCIMLEDGER_REPLICA_DATABASE_URL), the primary otherwise.

Every answer states its bound as `Data-As-Of`: every change acknowledged before that instant is in the answer.
An auditor needs exactly that to say "the history as of T"; a lag in bytes or seconds would leave them to work
it out. The bound is computed, not estimated:

- On the primary, it is the instant the request began reading: a change acknowledged before it has committed,
  and the read's snapshot is taken after it.
- On a replica, the primary's WAL position P is read first (with the instant), then the replica's replayed
  position R. When R >= P, everything committed on the primary before that instant has been replayed (an
  acknowledged commit's record is at or below the primary's written WAL), and the replica's snapshot, taken
  after R was read, holds it: the bound is the instant, as on the primary. When R < P, the bound is the commit
  time of the last transaction the replica replayed (pg_last_xact_replay_timestamp): every commit before it
  was replayed before it, as WAL is replayed in order (up to the few microseconds between a commit taking its
  timestamp and writing its record).
- A caller that needs the latest state says so (`Cache-Control: no-cache`): the read then waits, up to
  SCIMLEDGER_REPLICA_FRESH_WAIT_SECONDS, until the replica has replayed past P, so that the answer's bound is
  the request's own time; if the replica does not get there in time, ReplicaBehind (a 503 with Retry-After,
  saying how far behind it is). The primary is never read instead: the replica exists so that the auditors'
  long reads stay off the primary.

A replica URL that reaches a server not in recovery (a `target_session_attrs=prefer-standby` URL when no
standby is up, or a promoted standby) is read as a primary: its own instant is its bound.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import Literal

import asyncpg

Source = Literal["primary", "replica"]

# The primary's written WAL position: every acknowledged commit's record is at or below it.
_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"
# NULL positions on a server that is not in recovery.
_REPLAYED = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp(),
       pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())
"""
# How often a fresh read looks at the replica again while it waits for it to catch up.
_FRESH_POLL_SECONDS = 0.01


class ReplicaBehind(Exception):
    """A fresh read was asked for and the replica had not replayed up to the request within the wait."""

    def __init__(self, behind_bytes: int, replayed_until: datetime.datetime | None, waited: float) -> None:
        self.behind_bytes = behind_bytes
        self.replayed_until = replayed_until
        shown = replayed_until.isoformat() if replayed_until else "no transaction yet"
        super().__init__(
            f"The read replica is {behind_bytes} bytes of WAL behind the primary (it has replayed up to the "
            f"commit of {shown}) and did not catch up within {waited:g} seconds. Retry later, or ask without "
            "'Cache-Control: no-cache' for the answer as of the replica's last commit, which the answer's "
            "Data-As-Of header states."
        )


@dataclass(frozen=True, slots=True)
class ReadView:
    """Where to read, and the bound of what it holds: every change acknowledged before `as_of` is there."""

    pool: asyncpg.Pool[asyncpg.Record]
    as_of: datetime.datetime
    source: Source

    @property
    def headers(self) -> dict[str, str]:
        return {"Data-As-Of": http_instant(self.as_of), "Data-Source": self.source}


def http_instant(instant: datetime.datetime) -> str:
    """RFC 3339 in UTC, to the microsecond: a bound compared with events' own times must not be rounded up."""
    return instant.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


class ReadReplica:
    """One per process: hands out the ReadView of each auditor's read."""

    def __init__(
        self,
        primary: asyncpg.Pool[asyncpg.Record],
        replica: asyncpg.Pool[asyncpg.Record] | None,
        fresh_wait_seconds: float,
    ) -> None:
        self._primary = primary
        self.replica = replica
        self._fresh_wait_seconds = fresh_wait_seconds

    async def view(self, *, fresh: bool = False) -> ReadView:
        """Where this read runs and its bound; with `fresh`, the bound is now (see the module)."""
        started = _now()
        if self.replica is None:
            return ReadView(self._primary, started, "primary")
        target = await self._primary.fetchval(_PRIMARY_POSITION)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._fresh_wait_seconds
        while True:
            replayed = await self.replica.fetchrow(_REPLAYED, target)
            assert replayed is not None  # one row, always
            in_recovery, _, replayed_commit, behind = replayed
            if not in_recovery:
                return ReadView(self.replica, _now(), "primary")
            if behind <= 0:
                return ReadView(self.replica, started, "replica")
            if not fresh:
                if replayed_commit is None:
                    # A replica that has replayed no commit since it started holds no bound worth stating.
                    raise ReplicaBehind(int(behind), None, 0.0)
                return ReadView(self.replica, replayed_commit, "replica")
            if loop.time() >= deadline:
                raise ReplicaBehind(int(behind), replayed_commit, self._fresh_wait_seconds)
            await asyncio.sleep(_FRESH_POLL_SECONDS)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
