"""`scimledger token …` as a process: platform tokens without an organization, labels, two active SCIM tokens
at most, and the last use in the listing."""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx

from app.cli.exits import ExitCode
from tests.service import run_cli


def test_a_platform_token_is_issued_without_an_organization_alone_on_stdout(
    cli_env: dict[str, str],
) -> None:
    label = f"host-app-{uuid.uuid4().hex[:6]}"
    issued = run_cli(cli_env, "token", "issue", "--scope", "platform", "--label", label)
    token = issued.stdout.strip()
    assert issued.stdout == f"{token}\n", "the token alone on stdout"
    assert token.startswith("scl_")
    assert "platform" in issued.stderr
    listed = json.loads(run_cli(cli_env, "token", "list", "--format", "json").stdout)
    [mine] = [row for row in listed if row["label"] == label]
    assert (mine["scope"], mine["state"], mine["last_used_at"]) == ("platform", "active", None)

    org = f"Cli tokens {uuid.uuid4().hex[:6]}"
    run_cli(cli_env, "org", "create", org)
    with_org = run_cli(cli_env, "token", "issue", "--scope", "platform", "--org", org, check=False)
    assert with_org.returncode == ExitCode.REFUSED
    assert "without --org" in with_org.stderr
    without_org = run_cli(cli_env, "token", "issue", "--scope", "admin", check=False)
    assert without_org.returncode == ExitCode.REFUSED
    assert "name it with --org" in without_org.stderr


async def test_a_third_active_scim_token_is_refused_until_one_is_revoked(
    cli_env: dict[str, str], pool: asyncpg.Pool, asgi_app: object
) -> None:
    org = f"Rotation {uuid.uuid4().hex[:6]}"
    run_cli(cli_env, "org", "create", org)
    first = run_cli(cli_env, "token", "issue", "--org", org, "--label", "okta").stdout.strip()
    run_cli(cli_env, "token", "issue", "--org", org, "--label", "okta-next")
    third = run_cli(cli_env, "token", "issue", "--org", org, check=False)
    assert third.returncode == ExitCode.REFUSED
    assert third.stdout == ""
    assert "Revoke one first" in third.stderr
    # An auditor's or an admin's token is not a SCIM token.
    run_cli(cli_env, "token", "issue", "--org", org, "--scope", "admin")

    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://scim.test") as client:
        used = await client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {first}"})
    assert used.status_code == 200
    rows = json.loads(run_cli(cli_env, "token", "list", "--org", org, "--format", "json").stdout)
    assert [(row["label"], row["last_used_at"] is not None) for row in rows] == [
        ("okta", True),
        ("okta-next", False),
        (None, False),
    ]
    run_cli(cli_env, "token", "revoke", rows[0]["id"])
    assert run_cli(cli_env, "token", "issue", "--org", org).stdout.strip().startswith("scl_")
