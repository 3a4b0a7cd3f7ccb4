"""Okta's provisioning sequences against `scimledger serve` under uvicorn on loopback, set up with the CLI."""

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.cli.exits import ExitCode
from tests.conftest import okta_user
from tests.service import ServiceProcess, run_cli

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture(scope="module")
def server(cli_env: dict[str, str]) -> Iterator[ServiceProcess]:
    env = {
        **cli_env,
        "SCIMLEDGER_TOKEN_CACHE_SECONDS": "0",
        "SCIMLEDGER_LOG_LEVEL": "warning",
        # These sequences send bursts of one organization's requests at once, races included.
        "SCIMLEDGER_ORG_CONCURRENCY": "100",
    }
    service = ServiceProcess(env).start()
    yield service
    assert service.stop() == 0, service.output()


@dataclass
class Okta:
    client: httpx.AsyncClient
    org: str
    token: str


@pytest.fixture
async def okta(server: ServiceProcess) -> AsyncIterator[Okta]:
    org_name = f"Acme {uuid.uuid4().hex[:6]}"
    created = run_cli(server.env, "org", "create", org_name)
    org_id = created.stdout.strip().splitlines()[-1]
    uuid.UUID(org_id)
    issued = run_cli(server.env, "token", "issue", "--org", org_name, "--label", "okta")
    token = issued.stdout.strip()
    assert issued.stdout == f"{token}\n", "the token is alone on stdout"
    assert token.startswith("scl_")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}
    async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=10) as client:
        yield Okta(client, org_id, token)


def assign_body(user_name: str) -> dict[str, Any]:
    return okta_user(user_name, externalId=f"00u{uuid.uuid4().hex[:16]}")


async def test_connection_test_then_assign_with_filter_then_create(okta: Okta) -> None:
    client = okta.client
    probe = await client.get("/Users", params={"startIndex": 1, "count": 2})
    assert probe.status_code == 200
    assert {key: probe.json()[key] for key in ("totalResults", "startIndex", "itemsPerPage")} == {
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
    }

    check = await client.get(
        "/Users", params={"filter": 'userName eq "new.hire@acme.com"', "startIndex": 1, "count": 100}
    )
    assert check.json()["totalResults"] == 0
    created = await client.post("/Users", json=assign_body("new.hire@acme.com"))
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/scim+json"
    again = await client.get("/Users", params={"filter": 'userName eq "New.Hire@Acme.com"'})
    assert [resource["id"] for resource in again.json()["Resources"]] == [created.json()["id"]]

    duplicate = await client.post("/Users", json=assign_body("NEW.HIRE@acme.com"))
    assert duplicate.status_code == 409
    assert duplicate.json()["scimType"] == "uniqueness"


async def test_import_pages_through_every_user_exactly_once(okta: Okta) -> None:
    client = okta.client
    expected = set()
    for start in range(0, 230, 23):
        batch = await asyncio.gather(
            *(
                client.post("/Users", json=assign_body(f"import{index}@acme.com"))
                for index in range(start, start + 23)
            )
        )
        expected |= {response.json()["id"] for response in batch}
    seen: list[str] = []
    start_index = 1
    while True:
        page = (await client.get("/Users", params={"startIndex": start_index, "count": 100})).json()
        seen += [resource["id"] for resource in page["Resources"]]
        start_index += page["itemsPerPage"]
        if start_index > page["totalResults"]:
            break
    assert len(seen) == len(set(seen)) == 230
    assert set(seen) == expected


async def test_profile_push_then_deactivate_and_reactivate(okta: Okta) -> None:
    client = okta.client
    user = (await client.post("/Users", json=assign_body("push@acme.com"))).json()
    current = (await client.get(f"/Users/{user['id']}")).json()
    current["name"]["familyName"] = "Renamed"
    current["title"] = "Director"
    pushed = await client.put(f"/Users/{user['id']}", json=current)
    assert pushed.status_code == 200
    assert pushed.json()["name"]["familyName"] == "Renamed"

    for active in (False, True):
        response = await client.patch(
            f"/Users/{user['id']}",
            json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]},
        )
        assert response.status_code == 200
        fetched = (await client.get(f"/Users/{user['id']}")).json()
        assert fetched["active"] is active
        assert fetched["title"] == "Director"


async def test_twenty_concurrent_creates_of_one_user_name_through_uvicorn(okta: Okta) -> None:
    responses = await asyncio.gather(
        *(okta.client.post("/Users", json=assign_body("dup@acme.com")) for _ in range(20))
    )
    assert sorted(response.status_code for response in responses) == [201] + [409] * 19


async def test_unknown_ids_and_bad_tokens(okta: Okta, server: ServiceProcess) -> None:
    missing = await okta.client.get(f"/Users/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["status"] == "404"
    async with httpx.AsyncClient(base_url=server.base) as anonymous:
        response = await anonymous.get("/Users", headers={"Authorization": "Bearer scl_not-a-real-token"})
        assert response.status_code == 401
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def _posts_of_users_answered(server: ServiceProcess, status: int) -> float:
    """POST /Users requests the service's metrics count with `status`."""
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{server.root}/metrics")).text
    labels = ('method="POST"', 'route="/scim/v2/Users"', f'status="{status}"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("scimledger_http_requests_total{") and all(label in line for label in labels)
    )


async def test_a_client_that_hangs_up_mid_body_is_counted_as_499_and_logs_no_error(
    okta: Okta, server: ServiceProcess
) -> None:
    """Okta gives up on a slow request and closes the connection: nothing was applied, and it is not the
    service's failure, so it must neither page anyone with a 5xx nor log an error."""
    hung_up, failed = [await _posts_of_users_answered(server, status) for status in (499, 500)]
    user_name = f"hung-up-{uuid.uuid4().hex[:6]}@acme.com"
    body = json.dumps(assign_body(user_name)).encode()
    head = (
        f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {okta.token}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head + body[: len(body) // 2])
        await asyncio.sleep(0.2)  # the handler is waiting for the rest of the body when the client goes
    deadline = time.monotonic() + 10
    while await _posts_of_users_answered(server, 499) == hung_up:
        assert time.monotonic() < deadline, server.output()
        await asyncio.sleep(0.1)
    assert await _posts_of_users_answered(server, 500) == failed
    assert not server.output("ClientDisconnect")
    found = await okta.client.get("/Users", params={"filter": f'userName eq "{user_name}"'})
    assert found.json()["totalResults"] == 0


async def test_token_list_and_revoke_through_the_cli(okta: Okta, server: ServiceProcess) -> None:
    listed = run_cli(server.env, "token", "list", "--org", okta.org, "--format", "json").stdout
    [token] = json.loads(listed)
    assert (token["state"], token["label"], token["revoked_at"]) == ("active", "okta", None)
    assert okta.token not in listed, "secrets are never listed"
    assert (await okta.client.get("/Users")).status_code == 200
    run_cli(server.env, "token", "revoke", token["id"])
    assert (await okta.client.get("/Users")).status_code == 401
    assert "revoked" in run_cli(server.env, "token", "list", "--org", okta.org).stdout


async def test_rebuilding_the_scim_projection_while_serving_changes_no_answer(
    okta: Okta, server: ServiceProcess
) -> None:
    client = okta.client
    for index in range(5):
        user = (await client.post("/Users", json=assign_body(f"rebuild{index}@acme.com"))).json()
        if index % 2:
            await client.patch(
                f"/Users/{user['id']}",
                json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
            )
    # A deactivation is followed by the reactor's removal from the organization (version 3); compare after.
    deadline = time.monotonic() + 10
    while True:
        before = (await client.get("/Users")).json()
        versions = [user["meta"]["version"] for user in before["Resources"] if not user["active"]]
        if versions == ['W/"3"', 'W/"3"'] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert versions == ['W/"3"', 'W/"3"']
    rebuilt = run_cli(server.env, "projections", "rebuild", "scim")
    assert rebuilt.stdout.startswith("rebuilt scim from")
    assert (await client.get("/Users")).json() == before


def test_cli_reports_unknown_organizations_clearly(server: ServiceProcess) -> None:
    result = run_cli(server.env, "token", "issue", "--org", "no-such-org", check=False)
    assert result.returncode == 1
    assert "No organization 'no-such-org'" in result.stderr
    assert result.stdout == ""


def test_cli_on_a_fresh_embedded_data_dir_needs_no_database_url(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("cli")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["SCIMLEDGER_DATA_DIR"] = str(data_dir)
    # Only `migrate` (and `serve`) create and migrate the database; any other command says where it looked.
    for command in (["org", "create", "Embedded Co"], ["db", "url"]):
        refused = run_cli(env, *command, check=False)
        assert refused.returncode == ExitCode.NOT_MIGRATED, refused.stderr
        assert f"the embedded PostgreSQL in {data_dir.resolve()}" in refused.stderr
        assert "scimledger migrate" in refused.stderr
    assert not (data_dir / "postgres").exists(), "the refusals created nothing"
    assert run_cli(env, "migrate").stdout.startswith("applied ")
    created = run_cli(env, "org", "create", "Embedded Co")
    org_id = created.stdout.strip().splitlines()[-1]
    token = run_cli(env, "token", "issue", "--org", org_id).stdout.strip()
    assert token.startswith("scl_")
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert "migrations are current" in run_cli(env, "migrate").stdout


async def test_catalog_commands_and_a_push_group_link_through_uvicorn(
    okta: Okta, server: ServiceProcess
) -> None:
    org = okta.org

    def cli(*args: str) -> str:
        return run_cli(server.env, *args).stdout

    project_id = cli("project", "create", "--org", org, "Apollo").strip().splitlines()[-1]
    uuid.UUID(project_id)
    assert "and 0 group(s)" in cli("project", "create", "--org", org, "Zeus")
    assert "and 2 group(s)" in cli("role", "create", "--org", org, "Admin")
    cli("role", "create", "--org", org, "Viewer")
    duplicate = run_cli(server.env, "project", "create", "--org", org, "apollo", check=False)
    assert duplicate.returncode == 1
    assert "already has a project of that name" in duplicate.stderr

    def listed(*args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(cli(*args, "--org", org, "--format", "json"))
        return rows

    assert [project["name"] for project in listed("project", "list")] == ["Apollo", "Zeus"]
    assert len(listed("role", "list")) == 2

    groups = listed("group", "list")
    assert [group["displayName"] for group in groups] == [
        "Statsig-Apollo-Admin",
        "Statsig-Apollo-Viewer",
        "Statsig-Zeus-Admin",
        "Statsig-Zeus-Viewer",
    ]
    assert all((group["linked"], group["members"]) == (False, 0) for group in groups)

    client = okta.client
    user = (await client.post("/Users", json=assign_body("pusher@acme.com"))).json()["id"]
    found = (await client.get("/Groups", params={"filter": 'displayName eq "Statsig-Apollo-Admin"'})).json()
    group_id = found["Resources"][0]["id"]
    pushed = await client.patch(
        f"/Groups/{group_id}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user, "display": "Pusher"}]}],
        },
    )
    assert pushed.status_code == 204
    assert {"id": group_id, "displayName": "Statsig-Apollo-Admin", "linked": True, "members": 1} in listed(
        "group", "list"
    )

    cli("project", "rename", "--org", org, project_id, "Artemis")
    renamed = (await client.get(f"/Groups/{group_id}")).json()
    assert renamed["displayName"] == "Statsig-Artemis-Admin"
    assert "1 membership(s) revoked" in cli("project", "archive", "--org", org, "Artemis")
    assert (await client.get(f"/Groups/{group_id}")).status_code == 404
    assert {"name": "Artemis", "archived": True} in [
        {"name": project["name"], "archived": project["archived"]}
        for project in listed("project", "list", "--all")
    ]
    assert "Artemis" not in cli("project", "list", "--org", org)


async def test_an_admins_removal_reaches_okta_as_inactive_within_a_second(
    okta: Okta, server: ServiceProcess
) -> None:
    client = okta.client
    user = (await client.post("/Users", json=assign_body("leaver@acme.com"))).json()["id"]
    removed = run_cli(server.env, "user", "remove", "--org", okta.org, user)
    assert "removed user" in removed.stdout
    started = time.monotonic()
    while (await client.get(f"/Users/{user}")).json()["active"] is not False:
        assert time.monotonic() - started < 1.0, "serve's in-process runner did not deactivate within 1 s"
        await asyncio.sleep(0.02)
    unassign = await client.patch(
        f"/Users/{user}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert unassign.status_code == 200


def test_projections_status_and_rebuild_through_the_cli(server: ServiceProcess) -> None:
    report = run_cli(server.env, "projections", "status", "--format", "json").stdout
    states = {row["name"]: row["state"] for row in json.loads(report)}
    assert set(states) == {
        "scim",
        "analytics.provisioning_activity",
        "analytics.access",
        "audit.seals",
        "reactor.deactivation_removes_from_organization",
        "reactor.removal_deactivates",
    }
    assert states["scim"] == "inline"
    assert states["analytics.provisioning_activity"] == "running", "serve runs the runner in-process"
    rebuilt = run_cli(server.env, "projections", "rebuild", "analytics.provisioning_activity")
    assert rebuilt.stdout.startswith("rebuilt analytics.provisioning_activity from ")
    refused = run_cli(server.env, "projections", "rebuild", "reactor.removal_deactivates", check=False)
    assert refused.returncode == 1
    assert "is a reactor" in refused.stderr


async def test_an_okta_deactivation_empties_the_users_groups_within_a_second(
    okta: Okta, server: ServiceProcess
) -> None:
    client = okta.client
    run_cli(server.env, "project", "create", "--org", okta.org, "Hermes")
    run_cli(server.env, "role", "create", "--org", okta.org, "Reader")
    user = (await client.post("/Users", json=assign_body("departing@acme.com"))).json()["id"]
    group = (await client.get("/Groups", params={"filter": 'displayName eq "Statsig-Hermes-Reader"'})).json()
    group_id = group["Resources"][0]["id"]
    await client.patch(
        f"/Groups/{group_id}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}],
        },
    )
    assert (await client.get(f"/Groups/{group_id}")).json()["members"][0]["value"] == user
    deactivated = await client.patch(
        f"/Users/{user}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert deactivated.status_code == 200
    started = time.monotonic()
    while "members" in (await client.get(f"/Groups/{group_id}")).json():
        assert time.monotonic() - started < 1.0, (
            "serve's in-process runner did not remove the member within 1 s"
        )
        await asyncio.sleep(0.02)
