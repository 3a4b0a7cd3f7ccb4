"""Tamper evidence has no blind spots: an event the runner can never seal, seals that were deleted, and a
re-seal of an edited log are all caught, by `audit verify` on the CLI and over /audit alike.

Each test works on a database of its own: what a superuser forges here must not reach other tests.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.http.app import create_app
from app.infrastructure.settings import Settings
from app.services import tenancy
from projections import seals
from tests.integration.forgery import (
    META,
    Ledger,
    as_superuser,
    forge_user_in_the_future,
    open_ledger,
    seal_pending,
)
from tests.service import run_cli

HOUR = datetime.timedelta(hours=1)


@pytest.fixture
async def ledger(server_url: str) -> AsyncIterator[Ledger]:
    async with open_ledger(server_url) as opened:
        yield opened


async def verdict(
    ledger: Ledger, head: seals.Head | None = None, limit: datetime.timedelta = HOUR
) -> seals.Verdict:
    async with ledger.pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        return await seals.verify(connection, ledger.org.org_id, head, max_unsealed_age=limit)


async def kept_head(ledger: Ledger) -> seals.Head:
    async with ledger.pool.acquire() as connection:
        latest = await seals.head(connection, ledger.org.org_id)
    assert latest is not None
    return latest


async def test_an_event_with_a_transaction_id_from_the_future_fails_verify_with_or_without_the_head(
    ledger: Ledger,
) -> None:
    head = await kept_head(ledger)
    forged = await forge_user_in_the_future(ledger)
    await seal_pending(ledger.pool)  # the runner never reaches it: its tx is beyond every snapshot's xmin
    for expected in (None, head):
        result = await verdict(ledger, expected)
        assert not result.intact, "an event the runner can never seal was reported as merely 'not sealed yet'"
        assert f"event {forged} " in (result.problem or "")
        assert "transaction" in (result.problem or "")
    cli = run_cli(ledger.env, "audit", "verify", "--org", ledger.org.name, check=False)
    assert cli.returncode == 3, cli.stdout + cli.stderr
    assert f"event {forged} " in cli.stderr
    everyone = run_cli(ledger.env, "audit", "verify", check=False)
    assert everyone.returncode == 3, everyone.stdout + everyone.stderr


async def test_a_rebuild_of_the_scim_projection_refuses_a_log_holding_an_event_that_can_never_be_sealed(
    ledger: Ledger,
) -> None:
    forged = await forge_user_in_the_future(ledger)
    rebuilt = run_cli(ledger.env, "projections", "rebuild", "scim", check=False)
    assert rebuilt.returncode == 3, rebuilt.stdout + rebuilt.stderr
    assert f"event {forged} " in rebuilt.stderr
    granted = await ledger.pool.fetchval(
        "SELECT count(*) FROM scim_users WHERE lower(user_name) = 'mallory@seal.test'"
    )
    assert granted == 0, "the rebuild applied an event that can never be sealed"


async def test_the_seals_are_guarded_as_the_log_is(ledger: Ledger) -> None:
    for statement in (
        "TRUNCATE audit_seals",
        "DELETE FROM audit_seals",
        "UPDATE audit_seals SET seal = '\\x00'::bytea",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await ledger.pool.execute(statement)
    assert await ledger.pool.fetchval("SELECT count(*) FROM audit_seals") == 2


async def test_an_edit_after_the_seals_were_truncated_fails_verify_without_the_head(ledger: Ledger) -> None:
    await as_superuser(ledger.pool, "TRUNCATE audit_seals")
    await as_superuser(
        ledger.pool,
        "UPDATE events SET actor = 'admin:mallory' WHERE org_id = $1 AND stream_id = $2",
        ledger.org.org_id,
        ledger.user_id,
    )
    result = await verdict(ledger)
    assert not result.intact, "with its seals gone, an edited log verified as 'intact, 0 sealed'"
    assert "seal" in (result.problem or "")
    cli = run_cli(ledger.env, "audit", "verify", "--org", ledger.org.name, check=False)
    assert cli.returncode == 3, cli.stdout + cli.stderr


async def test_rebuilding_the_seals_never_reseals_an_edited_log(ledger: Ledger) -> None:
    await as_superuser(ledger.pool, "TRUNCATE audit_seals")
    await as_superuser(
        ledger.pool, "UPDATE events SET actor = 'admin:mallory' WHERE stream_id = $1", ledger.user_id
    )
    rebuilt = run_cli(ledger.env, "projections", "rebuild", "audit.seals", check=False)
    assert rebuilt.returncode == 3, rebuilt.stdout + rebuilt.stderr
    assert ledger.org.name in rebuilt.stderr
    assert await ledger.pool.fetchval("SELECT count(*) FROM audit_seals") == 0, "the edited log was re-sealed"
    assert not (await verdict(ledger)).intact


async def test_rebuilding_intact_seals_keeps_them_and_seals_what_is_pending(ledger: Ledger) -> None:
    head = await kept_head(ledger)
    await ledger.services.users.provision(ledger.org.org_id, {"userName": "cy@seal.test"}, META)
    rebuilt = run_cli(ledger.env, "projections", "rebuild", "audit.seals")
    assert "sealed 1 pending event" in rebuilt.stdout, rebuilt.stdout
    assert (await verdict(ledger, head)).intact, "the seals kept outside no longer match"
    latest = await kept_head(ledger)
    assert latest.position > head.position
    assert (await verdict(ledger)).unsealed == 0


async def test_events_left_unsealed_longer_than_the_limit_fail_verify(ledger: Ledger) -> None:
    await ledger.services.users.provision(ledger.org.org_id, {"userName": "dee@seal.test"}, META)
    recent = await verdict(ledger)
    assert recent.intact
    assert recent.unsealed == 1
    overdue = await verdict(ledger, limit=datetime.timedelta(0))
    assert not overdue.intact
    assert "not sealed" in (overdue.problem or "")
    env = {**ledger.env, "SCIMLEDGER_AUDIT_MAX_UNSEALED_SECONDS": "0"}
    cli = run_cli(env, "audit", "verify", "--org", ledger.org.name, check=False)
    assert cli.returncode == 3, cli.stdout + cli.stderr


async def test_verify_over_http_agrees_with_the_cli(ledger: Ledger) -> None:
    forged = await forge_user_in_the_future(ledger)
    async with ledger.pool.acquire() as connection:
        _, token = await tenancy.issue_token(connection, ledger.org.org_id, "auditor")
    settings = Settings(database_url=ledger.url, worker=False, rate_limit_per_second=0)
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://scim.test") as client:
            answer = await client.get("/audit/verify", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["intact"] is False
    assert f"event {forged} " in body["problem"]
    cli = run_cli(ledger.env, "audit", "verify", "--org", ledger.org.name, check=False)
    # The same problem, but for the next transaction id each saw when its check began: a counter of the whole
    # PostgreSQL cluster, which any other session (another test run's) moves on between the two checks.
    assert at_any_horizon(body["problem"]) in at_any_horizon(cli.stderr)


def at_any_horizon(problem: str) -> str:
    return re.sub(r"the next transaction id was \d+", "the next transaction id was N", problem)
