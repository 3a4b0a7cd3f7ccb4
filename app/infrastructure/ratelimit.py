"""A per-token rate limit: a token bucket for each API token, in this process's memory."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass


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

    def retry_after(self, token_id: uuid.UUID) -> int | None:
        """Take one request from the token's bucket: None if allowed, else whole seconds to wait."""
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
        return max(1, math.ceil((1 - bucket.tokens) / self.per_second))
