"""What the CLI lists, as an org admin and a script read it: a header on every table, one JSON document per
listing with `--format json`, and users found by id or by userName (ignoring case), with their state, groups
and recent history. Users and memberships are made over HTTP, as Okta makes them; the CLI runs as a process."""

from __future__ import annotations

import getpass
import json
import urllib.parse
from typing import Any

import asyncpg
import httpx
import pytest

from app.cli.exits import ExitCode
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import Metadata
from projections import user_directory
from tests.conftest import Tenant, okta_user
from tests.service import run_cli

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CATALOG_ADMIN = Metadata("admin:listings")
EARLY, LATE = "2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z"


def listed(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(run_cli(env, *args, "--format", "json").stdout)
    return rows


async def provision(scim: httpx.AsyncClient, user_name: str, display_name: str) -> str:
    created = await scim.post("/Users", json=okta_user(user_name, displayName=display_name))
    assert created.status_code == 201, created.text
    user_id: str = created.json()["id"]
    return user_id


async def push_member(scim: httpx.AsyncClient, group_name: str, user_id: str) -> None:
    found = await scim.get("/Groups", params={"filter": f'displayName eq "{group_name}"'})
    [group] = found.json()["Resources"]
    pushed = await scim.patch(
        f"/Groups/{group['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        },
    )
    assert pushed.status_code == 204, pushed.text


@pytest.fixture
async def people(scim: httpx.AsyncClient, services: Services, tenant: Tenant) -> dict[str, str]:
    """Three users of a fresh org: Ada holds Apollo × Admin, Bob was deactivated by Okta, and Cy was removed by
    an org admin with the CLI (no runner runs, so Cy is still active: removal and activity are apart)."""
    await services.catalog.create(PROJECT, tenant.org.org_id, "Apollo", CATALOG_ADMIN)
    await services.catalog.create(ROLE, tenant.org.org_id, "Admin", CATALOG_ADMIN)
    ids = {
        "ada": await provision(scim, "Ada@Acme.test", "Ada Lovelace"),
        "bob": await provision(scim, "bob@acme.test", "Bob Dylan"),
        "cy": await provision(scim, "cy@acme.test", "Cy Twombly"),
    }
    await push_member(scim, "Statsig-Apollo-Admin", ids["ada"])
    deactivated = await scim.patch(
        f"/Users/{ids['bob']}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert deactivated.status_code == 200
    return ids


async def test_user_list_gives_each_users_state_and_filters_it(
    people: dict[str, str], tenant: Tenant, cli_env: dict[str, str]
) -> None:
    org = tenant.org.name
    # By userName, in another case than the one provisioned: userName is caseExact false.
    removed = run_cli(cli_env, "user", "remove", "--org", org, "CY@ACME.TEST")
    assert people["cy"] in removed.stdout

    users = {user["userName"]: user for user in listed(cli_env, "user", "list", "--org", org)}
    assert list(users) == ["Ada@Acme.test", "bob@acme.test", "cy@acme.test"], "provisioning order"
    ada, bob, cy = users.values()
    assert (ada["id"], ada["displayName"], ada["active"], ada["member"], ada["groups"]) == (
        people["ada"],
        "Ada Lovelace",
        True,
        True,
        1,
    )
    assert (bob["active"], bob["member"], bob["removed_cause"]) == (False, True, None)
    assert (cy["active"], cy["member"], cy["removed_cause"]) == (True, False, "admin")
    assert cy["removed_by"] == f"admin:{getpass.getuser()}"
    assert cy["removed_at"] is not None

    def names(*filters: str) -> list[str]:
        return [user["userName"] for user in listed(cli_env, "user", "list", "--org", org, *filters)]

    assert names("--active") == ["Ada@Acme.test", "cy@acme.test"]
    assert names("--inactive") == ["bob@acme.test"]
    assert names("--removed") == ["cy@acme.test"]
    assert names("--inactive", "--removed") == []

    table = run_cli(cli_env, "user", "list", "--org", org, "--removed").stdout.splitlines()
    assert table[0].split() == list(user_directory.USER_COLUMNS)
    assert table[1].split()[:5] == [people["cy"], "cy@acme.test", "Cy", "Twombly", "yes"]


async def test_user_list_pages_through_an_org_in_provisioning_order(
    pool: asyncpg.Pool, scim: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The CLI reads a thousand users a page; pages of two show that no user is skipped or repeated."""
    created = [await provision(scim, f"pager{index}@acme.test", f"Pager {index}") for index in range(5)]
    async with pool.acquire() as connection:
        pages = [
            [str(user.user_id) for user in page]
            async for page in user_directory.users(
                connection, tenant.org.org_id, user_directory.UserFilter(), page_size=2
            )
        ]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [user for page in pages for user in page] == created


async def test_user_show_finds_a_user_by_username_and_tells_state_groups_and_history(
    people: dict[str, str], tenant: Tenant, cli_env: dict[str, str]
) -> None:
    org = tenant.org.name
    # Renamed after Ada joined its group: her groups have the new name, her history the name of its time.
    run_cli(cli_env, "project", "rename", "--org", org, "Apollo", "Artemis")
    run_cli(cli_env, "user", "remove", "--org", org, people["ada"])
    shown = json.loads(
        run_cli(cli_env, "user", "show", "--org", org, "ada@ACME.test", "--format", "json").stdout
    )
    assert (shown["id"], shown["userName"], shown["active"], shown["member"]) == (
        people["ada"],
        "Ada@Acme.test",
        True,
        False,
    )
    assert shown["removed_by_admin"] is True
    assert shown["profile"]["name"] == {"givenName": "Isaac", "familyName": "Brock"}
    [group] = shown["groups"]
    assert (group["displayName"], group["project"], group["role"]) == (
        "Statsig-Artemis-Admin",
        "Artemis",
        "Admin",
    )
    assert [entry["type"] for entry in shown["history"]] == [
        "UserProvisioned",
        "GroupMemberAdded",
        "UserRemovedFromOrganization",
    ]
    assert "added to group 'Statsig-Apollo-Admin'" in shown["history"][1]["change"]

    text = run_cli(cli_env, "user", "show", "--org", org, people["ada"], "--history", "1").stdout
    assert "member       no" in text
    assert "by an org admin in the app" in text
    assert "scimledger user restore" in text
    lines = text.splitlines()
    groups_header = lines.index("groups (project × role)") + 1
    assert lines[groups_header].split() == list(user_directory.GROUP_COLUMNS)
    assert lines[groups_header + 1].split()[1:4] == ["Statsig-Artemis-Admin", "Artemis", "Admin"]
    history_header = lines.index("recent history (last 1 event(s), oldest first)") + 1
    assert lines[history_header].split() == [
        "position",
        "recorded_at",
        "actor",
        "actor_label",
        "type",
        "change",
    ]
    assert "removed from the organization (cause: admin)" in lines[history_header + 1]

    run_cli(cli_env, "user", "restore", "--org", org, "ADA@acme.TEST")
    restored = json.loads(
        run_cli(cli_env, "user", "show", "--org", org, people["ada"], "--format", "json").stdout
    )
    assert (restored["member"], restored["removed_by_admin"], restored["removed_cause"]) == (
        True,
        False,
        None,
    )


async def test_a_user_who_is_not_there_is_refused_naming_the_org_and_the_database(
    people: dict[str, str], tenant: Tenant, cli_env: dict[str, str], database_url: str
) -> None:
    database = urllib.parse.urlsplit(database_url).path.lstrip("/")
    for command in ("show", "remove", "restore"):
        missing = run_cli(cli_env, "user", command, "--org", tenant.org.name, "nobody@acme.test", check=False)
        assert missing.returncode == ExitCode.REFUSED, missing.stderr
        assert f"No user 'nobody@acme.test' (by id or userName) in '{tenant.org.name}'" in missing.stderr
        assert f"database '{database}'" in missing.stderr
    other_org = run_cli(cli_env, "user", "show", "--org", "no-such-org", people["ada"], check=False)
    assert other_org.returncode == ExitCode.REFUSED
    assert f"No organization 'no-such-org' in database '{database}'" in other_org.stderr


def every_listing(org: str) -> list[list[str]]:
    """Every command that lists, with what it needs."""
    return [
        ["org", "list"],
        ["token", "list", "--org", org],
        ["project", "list", "--org", org, "--all"],
        ["role", "list", "--org", org],
        ["group", "list", "--org", org],
        ["user", "list", "--org", org],
        ["projections", "status"],
        ["audit", "history", "--org", org],
        ["audit", "access", "--org", org, "--from", EARLY, "--to", LATE],
    ]


async def test_every_listing_has_a_header_row_and_gives_one_json_document(
    people: dict[str, str], tenant: Tenant, cli_env: dict[str, str]
) -> None:
    for command in every_listing(tenant.org.name):
        rows = listed(cli_env, *command)
        assert rows, command
        columns = list(rows[0])
        table = run_cli(cli_env, *command).stdout.splitlines()
        assert table[0].split() == columns, command
        assert len(table) == len(rows) + 1, command


async def test_an_empty_listing_is_a_header_alone_or_an_empty_json_array(
    tenant: Tenant, cli_env: dict[str, str]
) -> None:
    org = tenant.org.name
    assert run_cli(cli_env, "user", "list", "--org", org).stdout.split() == list(user_directory.USER_COLUMNS)
    assert listed(cli_env, "user", "list", "--org", org) == []
    assert listed(cli_env, "group", "list", "--org", org) == []
    assert run_cli(cli_env, "group", "list", "--org", org).stdout.split() == [
        "id",
        "displayName",
        "linked",
        "members",
    ]
