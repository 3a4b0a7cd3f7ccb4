"""What a client is told when the database fails over under its request (app/http/errors.py)."""

from __future__ import annotations

import asyncpg
import pytest
from starlette.requests import Request

from app.http.errors import EXCEPTION_HANDLERS
from eventstore.pool import DATABASE_UNAVAILABLE, CommitOutcomeUnknown


def request(method: str) -> Request:
    return Request(
        {"type": "http", "method": method, "path": "/scim/v2/Users", "headers": [], "query_string": b""}
    )


def handler_for(error: Exception) -> object:
    """The handler Starlette picks: the first class of the error's MRO that has one."""
    return next(EXCEPTION_HANDLERS[cls] for cls in type(error).__mro__ if cls in EXCEPTION_HANDLERS)


async def answer(method: str, error: Exception) -> tuple[int, dict[str, str], str]:
    response = await handler_for(error)(request(method), error)  # type: ignore[operator]
    return response.status_code, dict(response.headers), bytes(response.body).decode()


async def test_a_write_lost_while_committing_is_a_503_that_does_not_say_nothing_was_changed() -> None:
    status, headers, body = await answer("POST", CommitOutcomeUnknown("connection lost while committing"))
    assert status == 503
    assert headers["retry-after"] == "5"
    assert "may or may not have been saved" in body
    assert "nothing was changed" not in body


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.TargetServerAttributeNotMatched("None of the hosts match the target attribute requirement"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_what_a_failover_raises_is_a_503_saying_nothing_was_changed(error: Exception) -> None:
    assert isinstance(error, DATABASE_UNAVAILABLE)
    status, headers, body = await answer("POST", error)
    assert status == 503
    assert headers["retry-after"] == "5"
    assert "nothing was changed" in body
