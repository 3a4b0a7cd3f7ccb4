"""The asyncpg pool, with the codecs every connection needs."""

from __future__ import annotations

import functools
from typing import Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from eventstore.personal_data import PersonalDataCipher

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
    # A server that has stopped being the primary: a standby, or a node its failover manager has made
    # read-only while it demotes it or promotes another. The work goes to the new primary once there is one
    # (see `keep_writable_session`, which drops the connection).
    asyncpg.ReadOnlySQLTransactionError,
)

# The connection broke, or the client gave up waiting, while a statement ran: whether a statement that
# commits (a COMMIT, an autocommit write) took effect on the server is unknown. A refusal by the server
# itself (a read-only server, a statement or lock timeout) is not among them: the server said no.
CONNECTION_LOST: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,
)


class CommitOutcomeUnknown(ConnectionError):
    """The connection was lost while a write committed, or just after, before the caller could answer: it
    may or may not have been saved. A failover does this to a COMMIT sent just before the primary died (the
    standby may have it: the synchronous replication's acknowledgement is what the old primary could not
    pass on). A ConnectionError, so that whatever treats the database as unavailable treats this so too."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary format is a version byte followed by the JSON text; pre-encoded bytes pass through.
    return b"\x01" + (value if isinstance(value, bytes) else _encoder.encode(value))


def _decode_jsonb(data: bytes) -> Any:
    return _decoder.decode(data[1:])


class LedgerConnection(asyncpg.Connection):
    """A connection that carries the cipher of personal data (eventstore/personal_data.py): every reader of the
    log holds a connection, so the cipher reaches each of them from where the pool is made, with no argument
    threaded through every projection. None: personal data is written in plaintext (benchmarks' baseline)."""

    personal_data: PersonalDataCipher | None = None


async def init_connection(connection: Connection, personal_data: PersonalDataCipher | None = None) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary", encoder=_encode_jsonb, decoder=_decode_jsonb
    )
    if personal_data is not None:
        connection.personal_data = personal_data  # type: ignore[union-attr]


async def connect(dsn: str, personal_data: PersonalDataCipher | None, **options: Any) -> LedgerConnection:
    """A connection of its own (a runner's), with the pool's codecs and cipher."""
    connection: LedgerConnection = await asyncpg.connect(dsn, connection_class=LedgerConnection, **options)
    await init_connection(connection, personal_data)
    return connection


async def keep_session(connection: Connection) -> None:
    """The pool's reset on release, which asyncpg runs after rolling back any transaction left open.

    asyncpg's default sends one more query on every release, to undo LISTEN, SET and session advisory
    locks. Nothing borrowed from these pools leaves any of them behind (locks taken here are either
    transaction-scoped or released in a `finally`), so that round trip would be paid on every request for
    nothing.
    """


async def keep_writable_session(connection: Connection) -> None:
    """`keep_session`, for a pool that writes: a connection to a server that no longer takes writes (a
    standby, or a primary that its failover manager has made read-only to demote it) is closed instead of
    going back to the pool, so that the next one is opened with the URL's `target_session_attrs` and
    reaches the new primary. The server reports both settings by itself when they change (ParameterStatus,
    PostgreSQL 14 and later), so the check costs no round trip."""
    if _refuses_writes(connection):
        connection.terminate()


def _refuses_writes(connection: Connection) -> bool:
    settings = connection.get_settings()
    return "on" in (
        getattr(settings, "default_transaction_read_only", "off"),
        getattr(settings, "in_hot_standby", "off"),
    )


async def create_pool(
    dsn: str,
    min_size: int = 2,
    max_size: int = 10,
    *,
    writes: bool = True,
    personal_data: PersonalDataCipher | None = None,
    **options: Any,
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool with our codecs. `writes`: False for a pool meant to read from a standby, whose connections
    are read-only by design and must not be dropped for it. `personal_data`: the cipher its connections
    encrypt and decrypt personal data with (the service always gives one; see LedgerConnection)."""
    reset = keep_writable_session if writes else keep_session
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=functools.partial(init_connection, personal_data=personal_data),
        reset=reset,
        connection_class=LedgerConnection,
        **options,
    )
    assert pool is not None
    return pool
