"""Idempotency keys of the management API's POSTs (the `Idempotency-Key` header), kept in PostgreSQL so that a
retry reaching another process, or arriving after a restart, gets the first answer.

A key is claimed by the request that first sends it (its row's status null while it runs); the response is
then recorded. Another request with the same key then gets, by `claim`:
- the recorded response, when its request (method, path, body) is the same: the client's retry;
- `Mismatch`, when it is another request: a key reused by mistake, which must not run as if it were new;
- `InProgress` while the first has not finished.
A claim whose request failed is released, so that a retry runs it again. Keys expire after KEY_LIFETIME, as
Stripe's do: then a key may be reused, and expired keys are purged as a token records new ones. A claim left
without a response for ABANDONED_AFTER (the process died mid-request) may be taken over by a retry; the work
of the request that died may then have been done, and is done again: at least once, as any retry is.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid

import msgspec

from eventstore.pool import Connection

KEY_LIFETIME = datetime.timedelta(hours=24)
ABANDONED_AFTER = datetime.timedelta(minutes=1)


class Recorded(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class InProgress(msgspec.Struct, frozen=True):
    pass


class Mismatch(msgspec.Struct, frozen=True):
    pass


class Claimed(msgspec.Struct, frozen=True):
    pass


def request_hash(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).digest()


# Takes the key when it is new, expired, or abandoned; leaves a live one as it is (and returns nothing).
_CLAIM = """
INSERT INTO idempotency_keys (token_id, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (token_id, key) DO UPDATE
    SET request_hash = excluded.request_hash, status = NULL, body = NULL, created_at = now()
    WHERE idempotency_keys.created_at < now() - $4::interval
       OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < now() - $5::interval)
RETURNING true
"""


async def claim(
    connection: Connection, token_id: uuid.UUID, key: str, hashed: bytes
) -> Claimed | Recorded | InProgress | Mismatch:
    for _ in range(3):
        if await connection.fetchval(_CLAIM, token_id, key, hashed, KEY_LIFETIME, ABANDONED_AFTER):
            return Claimed()
        row = await connection.fetchrow(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE token_id = $1 AND key = $2",
            token_id,
            key,
        )
        if row is None:
            continue  # released between the two statements: claim it again
        if row["request_hash"] != hashed:
            return Mismatch()
        if row["status"] is None:
            return InProgress()
        return Recorded(row["status"], row["body"])
    return InProgress()


async def record(connection: Connection, token_id: uuid.UUID, key: str, status: int, body: bytes) -> None:
    """Keep the response of the claimed key, and purge the token's expired keys."""
    await connection.execute(
        """
        WITH purged AS (
            DELETE FROM idempotency_keys WHERE token_id = $1 AND key <> $2 AND created_at < now() - $5::interval
        )
        UPDATE idempotency_keys SET status = $3, body = $4 WHERE token_id = $1 AND key = $2
        """,
        token_id,
        key,
        status,
        body,
        KEY_LIFETIME,
    )


async def release(connection: Connection, token_id: uuid.UUID, key: str) -> None:
    """Give up a claim whose request failed, so that a retry runs it."""
    await connection.execute(
        "DELETE FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND status IS NULL", token_id, key
    )
