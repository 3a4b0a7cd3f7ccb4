"""Organizations and their bearer tokens.

Tokens are credentials, not domain facts, so they live in plain tables. A token is 256 random bits shown
once; only its SHA-256 is stored, and a request's token is found by that hash, so no secret is ever
compared byte by byte.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Literal, get_args

import asyncpg
import msgspec

from app.services.org_schemas import SCHEMA_VERSION_SQL
from domain.catalog import checked_name
from domain.errors import DomainError, NotFound, OrgNameTaken
from eventstore.pool import Connection

TOKEN_PREFIX = "scl_"
# What a token may do: `scim` is an identity provider's (one org's SCIM resources), `auditor` reads one org's
# /audit. Checked by the database too (the api_tokens scope constraint).
TokenScope = Literal["scim", "auditor"]
SCOPES: tuple[TokenScope, ...] = get_args(TokenScope)


class Org(msgspec.Struct, frozen=True):
    org_id: uuid.UUID
    name: str


class Principal(msgspec.Struct, frozen=True):
    org_id: uuid.UUID
    token_id: uuid.UUID
    scope: TokenScope
    # The org's declared extension schemas' version (app/services/org_schemas.py), read with the token.
    schema_version: int = 0

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"


class TokenInfo(msgspec.Struct, frozen=True):
    token_id: uuid.UUID
    scope: TokenScope
    label: str | None
    created_at: datetime.datetime
    revoked_at: datetime.datetime | None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_org(connection: Connection, name: str) -> Org:
    name = name.strip()
    if not name:
        raise DomainError("An organization needs a name.")
    checked_name(name, "organization")  # bounded as projects' and roles' names are, for the same index
    org_id = uuid.uuid4()
    try:
        await connection.execute("INSERT INTO orgs (org_id, name) VALUES ($1, $2)", org_id, name)
    except asyncpg.UniqueViolationError as error:
        raise OrgNameTaken(f"An organization named '{name}' already exists.") from error
    return Org(org_id, name)


async def find_org(connection: Connection, reference: str) -> Org:
    """An org by id or by its unique name (ignoring case)."""
    try:
        row = await connection.fetchrow(
            "SELECT org_id, name FROM orgs WHERE org_id = $1", uuid.UUID(reference)
        )
    except ValueError:
        row = await connection.fetchrow(
            "SELECT org_id, name FROM orgs WHERE scim_fold(name) = scim_fold($1)", reference
        )
    if row is None:
        raise NotFound(f"No organization '{reference}'.")
    return Org(row["org_id"], row["name"])


async def list_orgs(connection: Connection) -> list[Org]:
    return [Org(*row) for row in await connection.fetch("SELECT org_id, name FROM orgs ORDER BY created_at")]


async def issue_token(
    connection: Connection, org_id: uuid.UUID, scope: str = "scim", label: str | None = None
) -> tuple[uuid.UUID, str]:
    if scope not in SCOPES:
        raise DomainError(f"Unknown scope '{scope}': use one of {', '.join(SCOPES)}.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4()
    await connection.execute(
        "INSERT INTO api_tokens (org_id, token_id, secret_hash, scope, label) VALUES ($1, $2, $3, $4, $5)",
        org_id,
        token_id,
        hash_token(token),
        scope,
        label,
    )
    return token_id, token


async def list_tokens(connection: Connection, org_id: uuid.UUID) -> list[TokenInfo]:
    rows = await connection.fetch(
        "SELECT token_id, scope, label, created_at, revoked_at FROM api_tokens WHERE org_id = $1 "
        "ORDER BY created_at",
        org_id,
    )
    return [TokenInfo(*row) for row in rows]


async def revoke_token(connection: Connection, token_id: uuid.UUID) -> None:
    revoked = await connection.fetchval(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_id = $1 RETURNING token_id",
        token_id,
    )
    if revoked is None:
        raise NotFound(f"No token {token_id}.")


class Authenticator:
    """Resolves bearer tokens to principals, remembering answers briefly so that a request costs no extra round
    trip. A revoked token therefore stops working within `cache_seconds`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], cache_seconds: float) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(
            "SELECT org_id, token_id, scope, secret_hash, "
            f"{SCHEMA_VERSION_SQL.format(org='api_tokens.org_id')} AS schema_version FROM api_tokens "
            "WHERE secret_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        # The index lookup compares digests, which a caller cannot steer byte by byte; the constant-time
        # comparison makes the match itself independent of how much of it agrees, whatever index is used.
        principal = None
        if row is not None and hmac.compare_digest(row["secret_hash"], digest):
            principal = Principal(row["org_id"], row["token_id"], row["scope"], row["schema_version"])
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()  # bound memory against floods of made-up tokens
            self._cache[digest] = (now + self._cache_seconds, principal)
        return principal
