"""`scimledger user invite` and `scimledger group members|add-member|remove-member`: the same services as the
management API, so the CLI and the API agree on what they record and refuse."""

from __future__ import annotations

import json
import uuid

import asyncpg

from app.cli.exits import ExitCode
from app.services import tenancy
from app.services.catalog import PROJECT, ROLE, CatalogService
from app.services.container import Services
from eventstore.records import Metadata
from tests.service import run_cli


async def test_an_invited_user_is_granted_and_revoked_in_an_unlinked_group_from_the_cli(
    cli_env: dict[str, str], pool: asyncpg.Pool, services: Services
) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"Cli grants {uuid.uuid4().hex[:6]}")
    await services.catalog.create(PROJECT, org.org_id, "Apollo", Metadata("admin:test"))
    await services.catalog.create(ROLE, org.org_id, "Viewer", Metadata("admin:test"))
    async with pool.acquire() as connection:
        [group] = await CatalogService.groups(connection, org.org_id)
    group_id = str(group.group_id)

    invited = run_cli(cli_env, "user", "invite", "--org", org.name, "ann@acme.example", "--given-name", "Ann")
    user_id = invited.stdout.strip().splitlines()[-1]
    uuid.UUID(user_id)
    again = run_cli(cli_env, "user", "invite", "--org", org.name, "ANN@acme.example", check=False)
    assert again.returncode == ExitCode.REFUSED
    assert "already exists" in again.stderr

    added = run_cli(cli_env, "group", "add-member", "--org", org.name, group_id, "ann@acme.example")
    assert f"user {user_id} added" in added.stdout
    members = json.loads(
        run_cli(cli_env, "group", "members", "--org", org.name, group_id, "--format", "json").stdout
    )
    assert [member["user_id"] for member in members] == [user_id]
    removed = run_cli(cli_env, "group", "remove-member", "--org", org.name, group_id, user_id)
    assert f"user {user_id} removed" in removed.stdout

    await pool.execute("UPDATE scim_groups SET linked = true WHERE org_id = $1", org.org_id)
    refused = run_cli(cli_env, "group", "add-member", "--org", org.name, group_id, user_id, check=False)
    assert refused.returncode == ExitCode.REFUSED
    assert "linked to the identity provider" in refused.stderr
    causes = await pool.fetch(
        "SELECT payload->>'cause' AS cause, actor FROM events WHERE org_id = $1 AND stream_id = $2 "
        "AND type IN ('GroupMemberAdded', 'GroupMemberRemoved') ORDER BY version",
        org.org_id,
        uuid.UUID(user_id),
    )
    assert [row["cause"] for row in causes] == ["app", "app"]
    assert all(row["actor"].startswith("admin:") for row in causes)
