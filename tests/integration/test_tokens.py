"""API tokens: 256 random bits, shown once, kept only as a hash, compared in constant time; four scopes, at
most two active SCIM tokens an organization, and their last use recorded without a write per request."""

import asyncio
import base64
import datetime
import hashlib
import uuid

import asyncpg
import pytest

from app.services import tenancy
from app.services.tenancy import Authenticator, PlatformPrincipal, Principal
from domain.errors import DomainError, TooManyTokens


async def test_a_token_carries_256_random_bits_and_only_its_hash_is_stored(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")
        issued = [await tenancy.issue_token(connection, org.org_id) for _ in range(2)]
        rows = await connection.fetch("SELECT * FROM api_tokens WHERE org_id = $1", org.org_id)
    (first_id, first), (_, second) = issued
    assert first != second
    secret = first.removeprefix(tenancy.TOKEN_PREFIX)
    assert len(base64.urlsafe_b64decode(secret + "=")) * 8 >= 256
    stored = next(row for row in rows if row["token_id"] == first_id)
    assert stored["secret_hash"] == hashlib.sha256(first.encode()).digest()
    # No column holds the token, or its secret part, in any form a query could return.
    for row in rows:
        for value in row.values():
            text = value.hex() if isinstance(value, bytes) else str(value)
            assert secret not in text
            assert first not in text


async def test_a_token_is_recognised_only_whole(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")
        _, token = await tenancy.issue_token(connection, org.org_id, scope="auditor")
    authenticator = Authenticator(pool, cache_seconds=0)
    principal = await authenticator.authenticate(token)
    assert principal is not None
    assert (principal.org_id, principal.scope) == (org.org_id, "auditor")
    for near_miss in (token[:-1], token + "A", token.upper(), "", tenancy.TOKEN_PREFIX):
        assert await authenticator.authenticate(near_miss) is None


async def test_a_token_has_exactly_one_scope_of_the_four(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")
        with pytest.raises(DomainError, match="Unknown scope 'owner'"):
            await tenancy.issue_token(connection, org.org_id, scope="owner")
    assert set(tenancy.SCOPES) == {"scim", "auditor", "admin", "platform"}


async def test_only_a_platform_token_belongs_to_no_organization(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")
        with pytest.raises(DomainError, match="platform token belongs to no organization"):
            await tenancy.issue_token(connection, org.org_id, scope="platform")
        with pytest.raises(DomainError, match="admin token belongs to one organization"):
            await tenancy.issue_token(connection, None, scope="admin")
        # The database holds the same rule, for writes made any other way.
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO api_tokens (org_id, token_id, secret_hash, scope) VALUES (NULL, $1, $2, 'scim')",
                uuid.uuid4(),
                uuid.uuid4().bytes,
            )
        token_id, token = await tenancy.issue_token(connection, None, scope="platform", label="host app")
    principal = await Authenticator(pool, cache_seconds=0).authenticate(token)
    assert principal == PlatformPrincipal(token_id)
    assert not isinstance(principal, Principal), "SCIM's org-bound principal is never a platform token"


async def test_an_organization_holds_two_active_scim_tokens_at_most_even_when_issued_at_once(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")

    async def issue() -> uuid.UUID | str:
        async with pool.acquire() as connection:
            try:
                return (await tenancy.issue_token(connection, org.org_id))[0]
            except TooManyTokens as refused:
                return str(refused)

    outcomes = await asyncio.gather(*(issue() for _ in range(6)))
    issued = [outcome for outcome in outcomes if isinstance(outcome, uuid.UUID)]
    assert len(issued) == 2
    refusals = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert all("Revoke one first" in refusal for refusal in refusals)
    async with pool.acquire() as connection:
        # Other scopes do not count, and a revoked SCIM token frees its place.
        await tenancy.issue_token(connection, org.org_id, scope="auditor")
        await tenancy.revoke_token(connection, issued[0])
        await tenancy.issue_token(connection, org.org_id)
        with pytest.raises(TooManyTokens):
            await tenancy.issue_token(connection, org.org_id)


async def test_the_lookup_records_last_use_at_most_once_a_minute(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")
        token_id, token = await tenancy.issue_token(connection, org.org_id)

    async def last_used() -> datetime.datetime | None:
        used: datetime.datetime | None = await pool.fetchval(
            "SELECT last_used_at FROM api_tokens WHERE token_id = $1", token_id
        )
        return used

    async def row_versions() -> str:
        return str(await pool.fetchval("SELECT xmin FROM api_tokens WHERE token_id = $1", token_id))

    authenticator = Authenticator(pool, cache_seconds=0)
    assert await last_used() is None
    await authenticator.authenticate(token)
    first = await last_used()
    assert first is not None
    written = await row_versions()
    for _ in range(5):
        await authenticator.authenticate(token)
    assert await last_used() == first
    assert await row_versions() == written, "no write within the minute"
    await pool.execute(
        "UPDATE api_tokens SET last_used_at = last_used_at - interval '61 seconds' WHERE token_id = $1",
        token_id,
    )
    await authenticator.authenticate(token)
    moved = await last_used()
    assert moved is not None
    assert moved > first - datetime.timedelta(seconds=61)


@pytest.mark.parametrize("name", ["x" * 201, "\ufdfa" * 200])
async def test_an_organization_name_too_long_for_its_index_is_refused_in_words(
    pool: asyncpg.Pool, name: str
) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(DomainError, match="organization name"):
            await tenancy.create_org(connection, name)
