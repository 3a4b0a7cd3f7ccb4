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
from collections.abc import Iterable
from typing import Literal, get_args

import asyncpg
import msgspec

from app.services.org_schemas import SCHEMA_VERSION_SQL
from domain.catalog import checked_name
from domain.errors import DomainError, NotFound, OrgNameTaken, TooManyTokens
from eventstore.pool import Connection

TOKEN_PREFIX = "scl_"
# What a token may do: `scim` is an identity provider's (one org's SCIM resources), `auditor` reads one org's
# /audit, `admin` is one org's management API (/api/v1/orgs/{its org}/...), `platform` is the host app's
# backend: the management API of every org, and creating orgs; it alone belongs to no org. Checked by the
# database too (the api_tokens scope and org constraints).
TokenScope = Literal["scim", "auditor", "admin", "platform"]
SCOPES: tuple[TokenScope, ...] = get_args(TokenScope)
PLATFORM: TokenScope = "platform"
# Two, so that Okta's token can be rotated without downtime: issue the new one, paste it into Okta, revoke
# the old one.
MAX_ACTIVE_SCIM_TOKENS = 2
# How stale `last_used_at` may be: the lookup that finds a token writes it only when it is older than this.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


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


class PlatformPrincipal(msgspec.Struct, frozen=True):
    """The host app's backend: a token of no organization, allowed every organization's management API. Kept
    apart from `Principal`, whose org_id every SCIM and audit query filters on, so that no code written for an
    organization's token can be handed one that has none (the type checker says so)."""

    token_id: uuid.UUID
    scope: Literal["platform"] = "platform"

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"


class TokenInfo(msgspec.Struct, frozen=True):
    token_id: uuid.UUID
    scope: TokenScope
    label: str | None
    created_at: datetime.datetime
    revoked_at: datetime.datetime | None
    last_used_at: datetime.datetime | None = None


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
        raise org_not_found(reference)
    return Org(row["org_id"], row["name"])


def org_not_found(reference: str) -> NotFound:
    return NotFound(f"No organization '{reference}'.")


class OrgLookup:
    """Organizations by reference (id or name), remembered once found, so that a platform token's request
    about an organization costs no extra round trip after the first. Sound because an organization is never
    deleted or renamed (nothing here does either): should that change, so must this. A reference that names
    nothing is not remembered, so an organization created since is found."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], capacity: int = 10_000) -> None:
        self._pool = pool
        self._capacity = capacity
        self._found: dict[str, Org] = {}

    async def find(self, reference: str) -> Org:
        org = self._found.get(reference)
        if org is None:
            async with self._pool.acquire() as connection:
                org = await find_org(connection, reference)
            if len(self._found) >= self._capacity:
                self._found.clear()  # bounded against a flood of distinct spellings of one name
            self._found[reference] = org
        return org


async def list_orgs(connection: Connection) -> list[Org]:
    return [Org(*row) for row in await connection.fetch("SELECT org_id, name FROM orgs ORDER BY created_at")]


async def issue_token(
    connection: Connection,
    org_id: uuid.UUID | None,
    scope: str = "scim",
    label: str | None = None,
    created_by: str | None = None,
) -> tuple[uuid.UUID, str]:
    """A new token of `scope` for `org_id` (None for a platform token, which belongs to no organization):
    its id, and the token itself, which is shown once and never stored. `created_by` is the actor who asked
    (as events name them), kept beside it."""
    if scope not in SCOPES:
        raise DomainError(f"Unknown scope '{scope}': use one of {', '.join(SCOPES)}.")
    if (scope == PLATFORM) != (org_id is None):
        raise DomainError(
            "A platform token belongs to no organization: issue it without one."
            if scope == PLATFORM
            else f"A {scope} token belongs to one organization: name it."
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4()
    async with connection.transaction():
        if scope == "scim":
            # The org's row is locked first, so that two issues at once cannot both count one active token
            # and leave three: the second waits, then counts the first's.
            await connection.execute("SELECT 1 FROM orgs WHERE org_id = $1 FOR UPDATE", org_id)
            active = await connection.fetchval(
                "SELECT count(*) FROM api_tokens WHERE org_id = $1 AND scope = 'scim' AND revoked_at IS NULL",
                org_id,
            )
            if active >= MAX_ACTIVE_SCIM_TOKENS:
                raise TooManyTokens(
                    f"This organization already has {active} active SCIM tokens, the most it may hold (two, so "
                    "that the identity provider's token can be rotated without downtime). Revoke one first: "
                    "'scimledger token list' shows them, 'scimledger token revoke TOKEN_ID' revokes one."
                )
        await connection.execute(
            "INSERT INTO api_tokens (org_id, token_id, secret_hash, scope, label, created_by) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            org_id,
            token_id,
            hash_token(token),
            scope,
            label,
            created_by,
        )
    return token_id, token


class TokenKey(msgspec.Struct, frozen=True):
    """Where a listing of tokens stands: the last token listed, in the listing's order."""

    created_at: datetime.datetime
    token_id: uuid.UUID


async def list_tokens(
    connection: Connection, org_id: uuid.UUID | None, after: TokenKey | None = None, limit: int | None = None
) -> list[TokenInfo]:
    """An organization's tokens (the platform's with None), oldest first; those after `after`, at most
    `limit` of them."""
    rows = await connection.fetch(
        "SELECT token_id, scope, label, created_at, revoked_at, last_used_at FROM api_tokens "
        "WHERE org_id IS NOT DISTINCT FROM $1 AND ($2::timestamptz IS NULL OR (created_at, token_id) > ($2, $3)) "
        "ORDER BY created_at, token_id LIMIT $4",
        org_id,
        after and after.created_at,
        after and after.token_id,
        limit,
    )
    return [TokenInfo(*row) for row in rows]


TOKEN_ACTOR = "token:"


async def actor_labels(connection: Connection, org_id: uuid.UUID, actors: Iterable[str]) -> dict[str, str]:
    """The label of each token among `actors` (as events name them, "token:<id>"), in one query: what
    histories, access reviews and evidence bundles show beside a token's id. A label is given at issue and
    never changed (nothing updates it), so the label now is the label the token had when it acted. Tokens of
    this organization, and platform tokens (which act on an organization's behalf); a token without a label,
    or another organization's, is left out. Other actors ("admin:<login>", "console:<label>", "reactor:<name>")
    name themselves already."""
    token_ids = set()
    for actor in actors:
        if actor.startswith(TOKEN_ACTOR):
            try:
                token_ids.add(uuid.UUID(actor.removeprefix(TOKEN_ACTOR)))
            except ValueError:
                continue  # not a token's id: nothing to look up
    if not token_ids:
        return {}
    rows = await connection.fetch(
        "SELECT token_id, label FROM api_tokens WHERE token_id = ANY($1::uuid[]) "
        "AND (org_id = $2 OR org_id IS NULL) AND label IS NOT NULL",
        list(token_ids),
        org_id,
    )
    return {f"{TOKEN_ACTOR}{row['token_id']}": row["label"] for row in rows}


# Any organization's token: what the CLI's `token revoke` may revoke, by id alone.
ANY_ORG = uuid.UUID(int=0)


async def revoke_token(
    connection: Connection,
    token_id: uuid.UUID,
    org_id: uuid.UUID | None = ANY_ORG,
    revoked_by: str | None = None,
) -> None:
    """Revoke a token; with `org_id`, only one of that organization (None: of the platform), so that an
    organization's admin cannot revoke, or learn of, another's. The first revocation's time and actor stay."""
    revoked = await connection.fetchval(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()), "
        "revoked_by = CASE WHEN revoked_at IS NULL THEN $4 ELSE revoked_by END WHERE token_id = $1 "
        "AND ($2::uuid = $3::uuid OR org_id IS NOT DISTINCT FROM $2) RETURNING token_id",
        token_id,
        org_id,
        ANY_ORG,
        revoked_by,
    )
    if revoked is None:
        raise NotFound(f"No token {token_id}.")


# The token lookup records when the token was last used, in the same statement, and only when the recorded
# time is over LAST_USED_RESOLUTION old, so a token costs at most one row write a minute and a request costs no
# extra round trip (the lookup itself runs at most once per token_cache_seconds per process). Chosen over a
# per-process batch flushed from the lifespan: nothing to lose on a crash, no task to run and stop, and the
# same statement in `serve` and the CLI. The UPDATE skips a row another session holds locked (a revoke, another
# process touching it at the same moment), so a lookup never waits on a lock; that touch is simply left to
# a later lookup. A data-modifying CTE runs once whether or not the outer query reads it.
_LOOKUP = f"""
WITH touched AS (
    UPDATE api_tokens SET last_used_at = now()
    WHERE token_id IN (
        SELECT token_id FROM api_tokens
        WHERE secret_hash = $1 AND revoked_at IS NULL
          AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)
        FOR UPDATE SKIP LOCKED
    )
)
SELECT org_id, token_id, scope, secret_hash,
       {SCHEMA_VERSION_SQL.format(org="api_tokens.org_id")} AS schema_version
FROM api_tokens WHERE secret_hash = $1 AND revoked_at IS NULL
"""


class Authenticator:
    """Resolves bearer tokens to principals, remembering answers briefly so that a request costs no extra round
    trip. A revoked token therefore stops working within `cache_seconds`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], cache_seconds: float) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, Principal | PlatformPrincipal | None]] = {}

    async def authenticate(self, token: str) -> Principal | PlatformPrincipal | None:
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(_LOOKUP, digest, LAST_USED_RESOLUTION)
        # The index lookup compares digests, which a caller cannot steer byte by byte; the constant-time
        # comparison makes the match itself independent of how much of it agrees, whatever index is used.
        principal: Principal | PlatformPrincipal | None = None
        if row is not None and hmac.compare_digest(row["secret_hash"], digest):
            if row["org_id"] is None:
                principal = PlatformPrincipal(row["token_id"])
            else:
                principal = Principal(row["org_id"], row["token_id"], row["scope"], row["schema_version"])
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()  # bound memory against floods of made-up tokens
            self._cache[digest] = (now + self._cache_seconds, principal)
        return principal
