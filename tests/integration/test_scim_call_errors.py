"""The writer of the connection status's errors (app/services/scim_call_errors.py) on PostgreSQL: the bound
holds whichever process writes, names come from the organization's own projections alone, and a write that
fails is logged and dropped, never raised."""

from __future__ import annotations

import datetime
import logging
import uuid

import asyncpg
import pytest

from app.services import tenancy
from app.services.container import Services
from app.services.scim_call_errors import FailedCall, ScimCallErrors
from eventstore.pool import create_pool
from eventstore.records import Metadata

META = Metadata("token:test")


async def new_org(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"org-{uuid.uuid4().hex[:10]}")
        token_id, _ = await tenancy.issue_token(connection, org.org_id, "scim", label="Entra")
    return org.org_id, token_id


def failed(org_id: uuid.UUID, token_id: uuid.UUID, request_id: str, **named: object) -> FailedCall:
    return FailedCall(
        org_id,
        token_id,
        datetime.datetime.now(datetime.UTC),
        "PATCH",
        "/scim/v2/Users/{id}",
        404,
        None,
        "No user.",
        request_id,
        **named,  # type: ignore[arg-type]
    )


async def test_the_bound_holds_when_two_processes_write_one_organization(pool: asyncpg.Pool) -> None:
    org_id, token_id = await new_org(pool)
    first, second = ScimCallErrors(pool, kept=3, flush_seconds=3600), ScimCallErrors(pool, kept=3)
    for number in range(3):
        first.note(failed(org_id, token_id, f"first-{number}"))
    for number in range(3):
        second.note(failed(org_id, token_id, f"second-{number}"))
    await first.flush()
    await second.flush()

    rows = await pool.fetch(
        "SELECT request_id, token_label FROM scim_call_errors WHERE org_id = $1 ORDER BY error_id", org_id
    )
    assert [(row["request_id"], row["token_label"]) for row in rows] == [
        ("second-0", "Entra"),
        ("second-1", "Entra"),
        ("second-2", "Entra"),
    ]


async def test_an_id_is_named_from_its_own_organization_alone(pool: asyncpg.Pool, services: Services) -> None:
    org_id, token_id = await new_org(pool)
    other_org, _ = await new_org(pool)
    mine = await services.users.provision(org_id, {"userName": "mine@acme.test"}, META)
    theirs = await services.users.provision(other_org, {"userName": "theirs@globex.test"}, META)
    errors = ScimCallErrors(pool)
    errors.note(failed(org_id, token_id, "mine", subject_kind="user", resource_id=mine.user_id))
    errors.note(failed(org_id, token_id, "theirs", subject_kind="user", resource_id=theirs.user_id))
    await errors.flush(org_id)

    rows = await pool.fetch(
        "SELECT request_id, subject_kind, subject FROM scim_call_errors WHERE org_id = $1 ORDER BY error_id",
        org_id,
    )
    assert [tuple(row) for row in rows] == [("mine", "user", "mine@acme.test"), ("theirs", None, None)]


async def test_a_write_that_fails_is_logged_and_dropped(
    database_url: str, caplog: pytest.LogCaptureFixture, pool: asyncpg.Pool
) -> None:
    org_id, token_id = await new_org(pool)
    closed = await create_pool(database_url, min_size=1, max_size=1)
    await closed.close()
    errors = ScimCallErrors(closed)
    errors.note(failed(org_id, token_id, "lost"))

    with caplog.at_level(logging.WARNING, logger="scimledger.connection"):
        await errors.flush()  # does not raise

    assert "could not write 1 SCIM call error(s)" in caplog.text
    assert await pool.fetchval("SELECT count(*) FROM scim_call_errors WHERE org_id = $1", org_id) == 0
