"""API tokens: 256 random bits, shown once, kept only as a hash, compared in constant time."""

import base64
import hashlib
import uuid

import asyncpg
import pytest

from app.services import tenancy
from app.services.tenancy import Authenticator
from domain.errors import DomainError


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


async def test_a_token_has_exactly_one_scope_of_the_two(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"tokens-{uuid.uuid4().hex[:6]}")
        with pytest.raises(DomainError, match="Unknown scope 'admin'"):
            await tenancy.issue_token(connection, org.org_id, scope="admin")
    assert set(tenancy.SCOPES) == {"scim", "auditor"}


@pytest.mark.parametrize("name", ["x" * 201, "\ufdfa" * 200])
async def test_an_organization_name_too_long_for_its_index_is_refused_in_words(
    pool: asyncpg.Pool, name: str
) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(DomainError, match="organization name"):
            await tenancy.create_org(connection, name)
