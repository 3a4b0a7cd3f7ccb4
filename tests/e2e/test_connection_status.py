"""The identity provider's connection status over HTTP: what its SCIM calls got wrong, named and worded for an
IT admin, bounded, coalesced, and shown to its own organization alone (GET /api/v1/orgs/{org}/connection)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager

from app.http.app import create_app
from app.infrastructure.settings import Settings
from app.services import tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import Metadata
from tests.conftest import okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BASE = "http://scim.test"


@dataclass(frozen=True)
class Okta:
    """An organization whose SCIM token is labelled "Okta", as its admin would name it, and its admin token."""

    org_id: uuid.UUID
    token_id: uuid.UUID
    scim: dict[str, str]
    admin: dict[str, str]


async def connected_org(pool: asyncpg.Pool) -> Okta:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"org-{uuid.uuid4().hex[:10]}")
        token_id, token = await tenancy.issue_token(connection, org.org_id, "scim", label="Okta")
        _, admin = await tenancy.issue_token(connection, org.org_id, "admin")
    return Okta(
        org.org_id, token_id, {"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {admin}"}
    )


@pytest.fixture
async def okta(pool: asyncpg.Pool) -> Okta:
    return await connected_org(pool)


async def connection_of(http: httpx.AsyncClient, org: Okta, **params: str) -> dict[str, Any]:
    response = await http.get(f"{BASE}/api/v1/orgs/{org.org_id}/connection", headers=org.admin, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def user_name() -> str:
    return f"jane.{uuid.uuid4().hex[:8]}@acme.example"


async def test_a_duplicate_user_name_is_shown_with_the_person_named_in_words(
    http: httpx.AsyncClient, okta: Okta
) -> None:
    jane = user_name()
    created = await http.post("/Users", json=okta_user(jane), headers=okta.scim)
    assert created.status_code == 201
    # Okta assigns the app to someone whose userName is taken, spelled in another case.
    collided = await http.post("/Users", json=okta_user(jane.upper()), headers=okta.scim)
    assert collided.status_code == 409

    status = await connection_of(http, okta)

    [error] = status["errors"]  # the success is not an error
    assert error["sentence"] == (
        f"Okta tried to create {jane.upper()}, but a user with that userName already exists (409 uniqueness)."
    )
    assert (error["subject_kind"], error["subject"]) == ("user", jane.upper())
    assert (error["method"], error["route"], error["status"], error["scim_type"]) == (
        "POST",
        "/scim/v2/Users",
        409,
        "uniqueness",
    )
    assert error["detail"] == collided.json()["detail"]
    assert error["request_id"] == collided.headers["x-request-id"]
    assert (error["token_id"], error["token_label"]) == (str(okta.token_id), "Okta")
    assert status["errors_last_day"] == [{"status": 409, "count": 1}]
    [token] = status["tokens"]
    assert (token["id"], token["label"]) == (str(okta.token_id), "Okta")
    assert token["last_used_at"] is not None
    assert status["last_call_at"] == token["last_used_at"]


async def test_a_patch_with_a_bad_filter_names_the_user_of_its_path(
    http: httpx.AsyncClient, okta: Okta
) -> None:
    jane = user_name()
    user_id = (await http.post("/Users", json=okta_user(jane), headers=okta.scim)).json()["id"]
    bad = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": 'emails[type eq "work"', "value": "x@y.z"}],
    }
    refused = await http.patch(f"/Users/{user_id}", json=bad, headers=okta.scim)
    assert refused.status_code == 400
    scim_type = refused.json()["scimType"]
    fine = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert (await http.patch(f"/Users/{user_id}", json=fine, headers=okta.scim)).status_code in (200, 204)

    [error] = (await connection_of(http, okta))["errors"]

    assert (error["subject_kind"], error["subject"], error["resource_id"]) == ("user", jane, user_id)
    assert error["route"] == "/scim/v2/Users/{id}"  # the template, never the path sent
    assert error["sentence"].startswith(f"Okta tried to change {jane}, but ")
    assert error["sentence"].endswith(f"(400 {scim_type}).")


async def test_a_group_patch_naming_an_unknown_member_names_the_group_and_the_member(
    http: httpx.AsyncClient, okta: Okta, services: Services
) -> None:
    await services.catalog.create(PROJECT, okta.org_id, "Apollo", Metadata("admin:test"))
    await services.catalog.create(ROLE, okta.org_id, "Admin", Metadata("admin:test"))
    [group] = (await http.get("/Groups", headers=okta.scim)).json()["Resources"]
    stranger = str(uuid.uuid4())
    add = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": stranger}]}],
    }
    refused = await http.patch(f"/Groups/{group['id']}", json=add, headers=okta.scim)
    assert refused.status_code == 400

    [error] = (await connection_of(http, okta))["errors"]

    assert (error["subject_kind"], error["subject"]) == ("group", group["displayName"])
    assert error["members"] == [stranger]
    assert error["sentence"] == (
        f"Okta tried to change the members of group '{group['displayName']}', but it named members that are "
        f"not users of this organization: {stranger} (400 invalidValue)."
    )


async def test_another_organizations_errors_never_appear(
    http: httpx.AsyncClient, okta: Okta, pool: asyncpg.Pool
) -> None:
    other = await connected_org(pool)
    theirs = user_name()
    for _ in range(2):
        await http.post("/Users", json=okta_user(theirs), headers=other.scim)
    assert [error["subject"] for error in (await connection_of(http, other))["errors"]] == [theirs]

    mine = await connection_of(http, okta)

    assert mine["errors"] == []
    assert mine["errors_last_day"] == []
    assert theirs not in str(mine)
    assert str(other.token_id) not in str(mine)
    # Nor can one organization's admin ask for the other's (answered as an organization that does not exist).
    response = await http.get(f"{BASE}/api/v1/orgs/{other.org_id}/connection", headers=okta.admin)
    assert response.status_code == 404
    assert theirs not in response.text


async def test_a_revoked_or_unknown_token_is_nobodys_error(
    http: httpx.AsyncClient, okta: Okta, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection:
        await tenancy.revoke_token(connection, okta.token_id)
    assert (await http.post("/Users", json=okta_user(user_name()), headers=okta.scim)).status_code == 401
    unknown = {"Authorization": "Bearer scl_not-a-token"}
    assert (await http.get("/Users", headers=unknown)).status_code == 401

    status = await connection_of(http, okta)

    assert status["errors"] == []
    assert status["tokens"] == []
    assert status["last_call_at"] is None


@pytest.fixture
async def slow_to_write(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app keeping 20 errors an organization and writing them only when the status is read (its window
    is an hour), so that what a flood costs is counted without depending on how fast it runs."""
    bounded = msgspec.structs.replace(settings, scim_errors_kept=20, scim_errors_flush_seconds=3600)
    async with LifespanManager(create_app(bounded)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=f"{BASE}/scim/v2") as client:
            yield client


async def written(pool: asyncpg.Pool, org: Okta) -> tuple[int, int]:
    """The organization's error rows, and how many transactions wrote them."""
    row = await pool.fetchrow(
        "SELECT count(*), count(DISTINCT xmin::text) FROM scim_call_errors WHERE org_id = $1", org.org_id
    )
    assert row is not None
    return row[0], row[1]


async def test_a_flood_of_failing_requests_costs_one_write_and_keeps_the_latest_n(
    slow_to_write: httpx.AsyncClient, okta: Okta, pool: asyncpg.Pool
) -> None:
    http = slow_to_write
    for number in range(1000):
        headers = {**okta.scim, "X-Request-Id": f"flood-{number:04d}"}
        response = await http.get("/Users", params={"filter": "userName eq"}, headers=headers)
        assert response.status_code == 400
    assert await written(pool, okta) == (0, 0)  # none on the requests' path

    status = await connection_of(http, okta, limit="100")

    assert await written(pool, okta) == (20, 1)  # 1,000 errors, one statement, the bound held
    assert [error["request_id"] for error in status["errors"]] == [
        f"flood-{number:04d}" for number in range(999, 979, -1)
    ]
    assert status["errors"][0]["sentence"] == (
        "Okta tried to look up users, but its filter could not be used (400 invalidFilter)."
    )
    assert status["errors_last_day"] == [{"status": 400, "count": 1000}]  # every one counted, kept or not

    for number in range(3):
        headers = {**okta.scim, "X-Request-Id": f"later-{number}"}
        await http.get("/Users", params={"filter": "userName eq"}, headers=headers)
    status = await connection_of(http, okta, limit="100")

    assert await written(pool, okta) == (20, 2)  # the next write trimmed the oldest three
    assert [error["request_id"] for error in status["errors"][:4]] == [
        "later-2",
        "later-1",
        "later-0",
        "flood-0999",
    ]
    assert status["errors_last_day"] == [{"status": 400, "count": 1003}]
