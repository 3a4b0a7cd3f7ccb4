"""The asyncpg pool, with the codecs every connection needs."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

# A connection of our own or one lent by the pool: everything that runs SQL accepts either.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# What a request or a runner gets when the database is down, restarting, refusing connections or too slow:
# nothing wrong with the work itself, which may be tried again once the database is back.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,  # statement_timeout: the database is too slow to answer
    asyncpg.LockNotAvailableError,  # lock_timeout: another session holds what the statement needs
    asyncpg.TooManyConnectionsError,
    # A connection the server is closing (a shutdown's FATAL has arrived, its socket's end not yet) can be
    # lent once more before asyncpg notices; using it fails before anything is sent.
    asyncpg.InternalClientError,
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary format is a version byte followed by the JSON text; pre-encoded bytes pass through.
    return b"\x01" + (value if isinstance(value, bytes) else _encoder.encode(value))


def _decode_jsonb(data: bytes) -> Any:
    return _decoder.decode(data[1:])


async def init_connection(connection: Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary", encoder=_encode_jsonb, decoder=_decode_jsonb
    )


async def keep_session(connection: Connection) -> None:
    """The pool's reset on release, which asyncpg runs after rolling back any transaction left open.

    asyncpg's default sends one more query on every release, to undo LISTEN, SET and session advisory
    locks. Nothing borrowed from these pools leaves any of them behind (locks taken here are either
    transaction-scoped or released in a `finally`), so that round trip would be paid on every request for
    nothing.
    """


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 10, **options: Any
) -> asyncpg.Pool[asyncpg.Record]:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, reset=keep_session, **options
    )
    assert pool is not None
    return pool
