"""Erasure and retention through the management API and the CLI: the same service, the same refusals, the same
event (tests/integration/test_erasure.py holds what an erasure leaves behind)."""

from __future__ import annotations

import subprocess
import uuid

import asyncpg
import httpx
from cryptography.fernet import Fernet

from app.services import tenancy
from tests.conftest import Tenant, new_tenant, okta_user
from tests.e2e.test_api_routes import Admin, admin, error_of
from tests.service import CLI, run_cli

REASON = {"reason": "GDPR request, ticket 88"}
# The management API's admin of a fresh organization, as tests/e2e/test_api_routes.py has it.
__all__ = ["admin"]


async def provisioned(admin: Admin, http_app: httpx.AsyncClient, user_name: str) -> str:
    created = await http_app.post("/Users", json=okta_user(user_name), headers=admin.okta)
    assert created.status_code == 201, created.text
    user_id: str = created.json()["id"]
    return user_id


async def erasures(pool: asyncpg.Pool, org_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT stream_id, actor FROM events WHERE org_id = $1 AND type = 'UserErased' ORDER BY position",
        org_id,
    )
    return [(str(row["stream_id"]), row["actor"]) for row in rows]


async def test_the_api_erases_a_removed_or_deleted_user_and_refuses_a_member(
    admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org_id = admin.tenant.org.org_id
    app = http  # the SCIM front of the same app
    member = await provisioned(admin, app, "ada@erase.example")
    refused = error_of(await admin.client.post(f"/users/{member}/erasure", json=REASON), 409)
    assert "still a member" in refused

    # Removed in the app, named by userName while listed; the response is the erasure as the log records it.
    assert (await admin.client.delete("/users/ada@erase.example")).status_code == 200
    erased = await admin.client.post(
        "/users/ada@erase.example/erasure", json=REASON, headers={"Idempotency-Key": "erase-ada"}
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["user_id"] == member
    assert erased.json()["actor"] == f"token:{admin.token_id}"
    assert erased.json()["reason"] == REASON["reason"]
    # A retry with the same key gets the same answer, and erases nothing more.
    again = await admin.client.post(
        "/users/ada@erase.example/erasure", json=REASON, headers={"Idempotency-Key": "erase-ada"}
    )
    assert again.json() == erased.json()
    assert await erasures(pool, org_id) == [(member, f"token:{admin.token_id}")]
    # Without the key, a second erasure is refused: there is nothing left to erase.
    assert "already erased" in error_of(await admin.client.post(f"/users/{member}/erasure", json=REASON), 409)
    assert (await admin.client.get(f"/users/{member}")).status_code == 404

    # Deleted by the identity provider: listed nowhere, erased by id.
    gone = await provisioned(admin, app, "bo@erase.example")
    assert (await app.delete(f"/Users/{gone}", headers=admin.okta)).status_code == 204
    assert (await admin.client.post(f"/users/{gone}/erasure", json=REASON)).status_code == 200
    # Their userName is free again.
    assert (
        await app.post("/Users", json=okta_user("bo@erase.example"), headers=admin.okta)
    ).status_code == 201

    # The feed publishes it, in the public vocabulary.
    feed = await admin.client.get("/events", params={"types": "user.erased"})
    assert [(event["data"]["user_id"], event["data"]["reason"]) for event in feed.json()["data"]] == [
        (member, REASON["reason"]),
        (gone, REASON["reason"]),
    ]


async def test_an_erasure_needs_a_reason_without_the_persons_data(
    admin: Admin, http: httpx.AsyncClient
) -> None:
    app = http
    user = await provisioned(admin, app, "cy@erase.example")
    assert (await app.delete(f"/Users/{user}", headers=admin.okta)).status_code == 204
    assert (await admin.client.post(f"/users/{user}/erasure", json={})).status_code == 422
    assert "repeats the person's own data" in error_of(
        await admin.client.post(f"/users/{user}/erasure", json={"reason": "asked by cy@erase.example"}), 409
    )


async def test_the_retention_policy_is_off_by_default_and_set_by_the_api(admin: Admin) -> None:
    assert (await admin.client.get("/retention")).json()["days"] is None
    put = await admin.client.put("/retention", json={"days": 30})
    assert put.status_code == 200, put.text
    assert (await admin.client.get("/retention")).json()["days"] == 30
    assert (await admin.client.put("/retention", json={"days": 0})).status_code == 422
    assert (await admin.client.put("/retention", json={"days": None})).json()["days"] is None


async def test_retention_of_another_organization_is_404_and_unchanged(
    admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    other: Tenant = await new_tenant(pool)
    url = f"http://scim.test/api/v1/orgs/{other.org.org_id}/retention"
    assert (await admin.client.get(url)).status_code == 404
    assert (await admin.client.put(url, json={"days": 1})).status_code == 404
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT personal_data_retention_days FROM orgs WHERE org_id = $1", other.org.org_id
            )
            is None
        )


def erase_cli(env: dict[str, str], *args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "user", "erase", *args], env=env, capture_output=True, text=True, timeout=60, input=answer or ""
    )


async def test_the_cli_asks_for_confirmation_and_erases_only_when_given(
    cli_env: dict[str, str], pool: asyncpg.Pool, admin: Admin, http: httpx.AsyncClient
) -> None:
    org = str(admin.tenant.org.org_id)
    app = http
    member = await provisioned(admin, app, "di@erase.example")
    refused = erase_cli(cli_env, "--org", org, member, "--reason", "ticket 9", "--yes")
    assert refused.returncode == 1
    assert "still a member" in refused.stderr
    assert (await app.delete(f"/Users/{member}", headers=admin.okta)).status_code == 204

    unconfirmed = erase_cli(cli_env, "--org", org, member, "--reason", "ticket 9", answer="yes\n")
    assert unconfirmed.returncode == 1
    assert "Not confirmed" in unconfirmed.stderr
    assert await erasures(pool, admin.tenant.org.org_id) == []

    confirmed = erase_cli(cli_env, "--org", org, member, "--reason", "ticket 9", answer="erase\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "erased the personal data" in confirmed.stdout
    [(user, actor)] = await erasures(pool, admin.tenant.org.org_id)
    assert user == member
    assert actor.startswith("admin:")
    # The history tells it, with the reason.
    history = run_cli(cli_env, "audit", "history", "--org", org, "--user", member)
    assert "personal data erased (reason: ticket 9)" in history.stdout


async def test_the_cli_shows_and_sets_the_retention_policy(
    cli_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"retention-{uuid.uuid4().hex[:8]}")
    shown = run_cli(cli_env, "org", "retention", "--org", org.name)
    assert "off" in shown.stdout
    assert "30 day(s)" in run_cli(cli_env, "org", "retention", "--org", org.name, "--days", "30").stdout
    assert "30 day(s)" in run_cli(cli_env, "org", "retention", "--org", org.name).stdout
    assert "off" in run_cli(cli_env, "org", "retention", "--org", org.name, "--off").stdout
    assert run_cli(cli_env, "org", "retention", "--org", org.name, "--days", "0", check=False).returncode == 2


async def test_a_request_id_quoting_the_persons_e_mail_does_not_outlive_the_erasure(
    admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # A host app's script that names its requests after whom they are about: the id is recorded on every
    # event the request caused (plaintext, append-only) and on every log line, so it must not be adopted.
    org_id = admin.tenant.org.org_id
    email = f"eve.{uuid.uuid4().hex[:8]}@erase.example"
    created = await http.post(
        "/Users", json=okta_user(email), headers={**admin.okta, "X-Request-Id": f"provision/{email}"}
    )
    assert created.status_code == 201, created.text
    assert email not in created.headers["X-Request-Id"]
    user_id = created.json()["id"]
    assert (await http.delete(f"/Users/{user_id}", headers=admin.okta)).status_code == 204
    assert (await admin.client.post(f"/users/{user_id}/erasure", json=REASON)).status_code == 200
    quoting = await pool.fetchval(
        "SELECT count(*) FROM events WHERE org_id = $1 AND strpos(lower(events::text), $2) > 0", org_id, email
    )
    assert quoting == 0


async def test_rewrap_without_the_old_key_says_which_setting_is_wrong_and_changes_nothing(
    cli_env: dict[str, str], admin: Admin, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # The operator dropped the old KEK before rewrapping: the keys it wrapped cannot be rotated.
    await provisioned(admin, http, f"rotation.{uuid.uuid4().hex[:8]}@erase.example")
    before = await pool.fetch("SELECT org_id, user_id, wrapped_key FROM personal_data_keys ORDER BY 1, 2")
    only_new = {**cli_env, "SCIMLEDGER_PERSONAL_DATA_KEYS": Fernet.generate_key().decode()}
    rewrap = run_cli(only_new, "personal-data", "rewrap", check=False)
    assert rewrap.returncode == 2, rewrap.stderr
    assert "SCIMLEDGER_PERSONAL_DATA_KEYS" in rewrap.stderr
    assert "Traceback" not in rewrap.stderr
    assert (
        await pool.fetch("SELECT org_id, user_id, wrapped_key FROM personal_data_keys ORDER BY 1, 2")
        == before
    )
