"""What one request may cost the database: a bound on filters, and a statement timeout reported as what it is."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from app.http.app import create_app
from app.infrastructure.settings import Settings
from tests.conftest import PERSONAL_DATA_KEYS, Tenant, okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# The filter of the report: 143 value filters with `co`, within the 4,096 characters a filter may have.
REPORTED_FILTER = " or ".join(f'emails[value co "x{index:03}"]' for index in range(143))


def any_of(count: int, operator: str = "eq") -> str:
    return " or ".join(f'emails[value {operator} "u{index}@x.example"]' for index in range(count))


async def test_the_reported_filter_is_refused_with_a_detail_naming_the_count_and_the_limit(
    scim: httpx.AsyncClient,
) -> None:
    assert len(REPORTED_FILTER) <= 4096
    response = await scim.get("/Users", params={"filter": REPORTED_FILTER})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["scimType"] == "invalidFilter"
    assert "143 comparisons" in body["detail"]
    assert "at most 20" in body["detail"]
    assert "SCIMLEDGER_MAX_FILTER_TERMS" in body["detail"]


async def test_a_filter_with_more_comparisons_than_the_limit_is_refused_on_groups_too(
    scim: httpx.AsyncClient,
) -> None:
    within = " or ".join(f'displayName eq "g{index}"' for index in range(20))
    assert (await scim.get("/Groups", params={"filter": within})).status_code == 200
    response = await scim.get("/Groups", params={"filter": f'{within} or displayName eq "g20"'})
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidFilter"
    assert "21 comparisons" in response.json()["detail"]


async def test_substring_comparisons_have_a_lower_limit_than_the_others(scim: httpx.AsyncClient) -> None:
    assert (await scim.get("/Users", params={"filter": any_of(20)})).status_code == 200
    assert (await scim.get("/Users", params={"filter": any_of(5, "co")})).status_code == 200
    mixed = f'{any_of(3, "co")} or {any_of(3, "ew")} or userName eq "a"'
    response = await scim.get("/Users", params={"filter": mixed})
    assert response.status_code == 400
    body = response.json()
    assert body["scimType"] == "invalidFilter"
    assert "6 'co' or 'ew' comparisons" in body["detail"]
    assert "at most 5" in body["detail"]
    assert "SCIMLEDGER_MAX_FILTER_SUBSTRING_TERMS" in body["detail"]


@asynccontextmanager
async def serving(database_url: str, **environment: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, configured as `serve` would be from `environment`."""
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "SCIMLEDGER_WORKER": "false",
            "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
            "SCIMLEDGER_TOKEN_CACHE_SECONDS": "0",
            # Every process of a deployment shares the key-encryption keys of personal data.
            "SCIMLEDGER_PERSONAL_DATA_KEYS": PERSONAL_DATA_KEYS,
            **environment,
        }
    )
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://scim.test/scim/v2") as client:
            yield client


# The statement is made to run past a tiny timeout by waiting on a lock the test holds: a wait counts
# against the statement timeout as work does, and it ends exactly when the test says. The database timeout,
# which bounds lock waits on its own (as a slow database), is longer.
TIMEOUTS = {"SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS": "0.3", "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "3"}


async def test_a_search_stopped_by_the_statement_timeout_is_a_400_too_many_not_database_unavailable(
    settings: Settings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    assert settings.database_url is not None
    async with serving(settings.database_url, **TIMEOUTS) as client:
        client.headers.update(tenant.headers)
        assert (await client.get("/Users", params={"filter": 'userName co "x"'})).status_code == 200
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE scim_users IN ACCESS EXCLUSIVE MODE")
            response = await client.get("/Users", params={"filter": 'userName co "x"'})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["scimType"] == "tooMany"
    assert "longer than the 0.3 seconds" in body["detail"]
    assert "SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS" in body["detail"]
    assert "Narrow the filter" in body["detail"]


async def test_a_write_stopped_by_the_statement_timeout_is_a_503_saying_so_and_changes_nothing(
    settings: Settings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    assert settings.database_url is not None
    async with serving(settings.database_url, **TIMEOUTS) as client:
        client.headers.update(tenant.headers)
        created = await client.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:10]}@limits.example"))
        user_id = created.json()["id"]
        change = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"title": "Changed"}}]}
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute(
                "SELECT 1 FROM scim_users WHERE user_id = $1 FOR UPDATE", uuid.UUID(user_id)
            )
            response = await client.patch(f"/Users/{user_id}", json=change)
        after = await client.get(f"/Users/{user_id}")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    detail = response.json()["detail"]
    assert "took longer than the 0.3 seconds" in detail
    assert "nothing was changed" in detail
    assert "unavailable" not in detail
    assert "title" not in after.json()
    assert after.json()["meta"]["version"] == created.json()["meta"]["version"]


async def test_a_wait_behind_another_sessions_lock_past_the_database_timeout_is_still_database_unavailable(
    settings: Settings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    assert settings.database_url is not None
    environment = {"SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS": "30", "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "0.3"}
    async with serving(settings.database_url, **environment) as client:
        client.headers.update(tenant.headers)
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE scim_users IN ACCESS EXCLUSIVE MODE")
            response = await asyncio.wait_for(client.get("/Users"), timeout=20)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("The service's database is unavailable or too slow")
