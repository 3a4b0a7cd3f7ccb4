"""The rate limit shared in PostgreSQL (SCIMLEDGER_RATE_LIMIT_SHARED): two limiters on one database stand for
two processes, and let a token's burst through once between them (docs/scaling.md, *Many processes*)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from app.infrastructure.ratelimit import RateLimit, RateLimiter, SharedRateLimiter

# A burst of 3, then one request every 1,000 s: nothing refills during a test.
BURST, PER_SECOND = 3, 0.001


async def alternating(
    limiters: tuple[RateLimit, RateLimit], token_id: uuid.UUID, requests: int
) -> list[bool]:
    """Whether each request was let through, sent to each limiter in turn, as a load balancer would."""
    return [await limiters[index % 2].retry_after(token_id) is None for index in range(requests)]


async def test_two_processes_sharing_the_limit_let_a_token_s_burst_through_once(pool: asyncpg.Pool) -> None:
    shared = (SharedRateLimiter(pool, PER_SECOND, BURST), SharedRateLimiter(pool, PER_SECOND, BURST))
    token = uuid.uuid4()
    assert await alternating(shared, token, 6) == [True, True, True, False, False, False]
    wait = await shared[0].retry_after(token)
    assert wait is not None
    assert 900 <= wait <= 1000  # a whole request's refill at one per 1,000 s, less the time since
    # Another token has a bucket of its own.
    assert await alternating(shared, uuid.uuid4(), 1) == [True]


async def test_two_processes_each_counting_their_own_let_the_burst_through_twice() -> None:
    # What the shared limit is for: without it, every process adds a burst.
    separate = (RateLimiter(PER_SECOND, BURST), RateLimiter(PER_SECOND, BURST))
    assert await alternating(separate, uuid.uuid4(), 8) == [True] * 6 + [False] * 2


async def test_a_race_of_requests_lets_exactly_the_burst_through(pool: asyncpg.Pool) -> None:
    limiters = [SharedRateLimiter(pool, PER_SECOND, 5) for _ in range(4)]
    token = uuid.uuid4()
    waits = await asyncio.gather(*(limiters[index % 4].retry_after(token) for index in range(20)))
    assert sum(wait is None for wait in waits) == 5
