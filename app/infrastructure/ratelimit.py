"""The per-token rate limit: a token bucket for each API token (or console session), kept in this process's
memory (`RateLimiter`) or, with SCIMLEDGER_RATE_LIMIT_SHARED, in PostgreSQL for every process at once
(`SharedRateLimiter`)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from app.infrastructure.settings import Settings


class RateLimit(Protocol):
    async def retry_after(self, token_id: uuid.UUID) -> int | None:
        """Take one request from the token's bucket: None if allowed, else whole seconds to wait."""
        ...


def rate_limit(settings: Settings, pool: asyncpg.Pool[asyncpg.Record]) -> RateLimit:
    if settings.rate_limit_shared and settings.rate_limit_per_second > 0:
        return SharedRateLimiter(pool, settings.rate_limit_per_second, settings.rate_limit_burst)
    return RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)


def _wait(tokens: float, per_second: float) -> int:
    return max(1, math.ceil((1 - tokens) / per_second))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`per_second` requests a second on average, up to `burst` at once; 0 turns the limit off.

    Each process keeps its own buckets, so with N processes a token gets up to N times the rate. Buckets
    exist only for authenticated tokens, whose number the database bounds.
    """

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = max(burst, 1)
        self._clock = clock
        self._buckets: dict[uuid.UUID, _Bucket] = {}

    async def retry_after(self, token_id: uuid.UUID) -> int | None:
        if self.per_second <= 0:
            return None
        now = self._clock()
        bucket = self._buckets.get(token_id)
        if bucket is None:
            bucket = self._buckets[token_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return _wait(bucket.tokens, self.per_second)


# Refill by the time since the bucket's last request, then take one if there is one, in one statement. The
# row lock of the upsert makes one token's concurrent requests take their turns, whichever process they
# reach; other tokens' rows are not touched. `SET` sees the row as it was, so `refilled` is spelled out
# where it is needed. Times are the statement's start: a request that waited on the lock behind a later
# starter counts no negative time.
_REFILLED = (
    "least($2::float8, bucket.tokens + $3::float8 * "
    "greatest(0, extract(epoch FROM statement_timestamp() - bucket.updated_at)))"
)
_TAKE = f"""
INSERT INTO rate_limit_buckets AS bucket (bucket_id, tokens, updated_at, allowed)
VALUES ($1, $2::float8 - 1, statement_timestamp(), true)
ON CONFLICT (bucket_id) DO UPDATE SET
    tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END,
    allowed = {_REFILLED} >= 1,
    updated_at = greatest(bucket.updated_at, statement_timestamp())
RETURNING tokens, allowed
"""


class SharedRateLimiter:
    """The same limit as RateLimiter, counted in PostgreSQL across every process: a round trip per request."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], per_second: float, burst: int) -> None:
        self._pool = pool
        self.per_second = per_second
        self.burst = max(burst, 1)

    async def retry_after(self, token_id: uuid.UUID) -> int | None:
        row = await self._pool.fetchrow(_TAKE, token_id, float(self.burst), self.per_second)
        assert row is not None  # an upsert with RETURNING returns its row
        return None if row["allowed"] else _wait(row["tokens"], self.per_second)
