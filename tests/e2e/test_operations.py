"""What operators rely on: probes, metrics, request ids, logs without identities, headers, rate limits."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from app.http.app import create_app
from app.infrastructure.logs import JsonFormatter
from app.infrastructure.settings import Settings
from app.services.users import UserService
from tests.conftest import Tenant, new_tenant, okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://scim.test") as client:
            yield client


def metric_value(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                return float(sample.value)
    return 0.0


async def test_readyz_checks_the_database_the_migrations_and_the_runner(http: httpx.AsyncClient) -> None:
    response = await http.get("http://scim.test/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "runner": "not in this process"},
    }
    assert (await http.get("http://scim.test/healthz")).json() == {"status": "ok"}


async def test_readyz_is_503_once_the_in_process_runner_has_stopped(settings: Settings) -> None:
    async with serving(msgspec.structs.replace(settings, worker=True)) as client:
        assert (await client.get("/readyz")).json()["checks"]["runner"] == "ok"
        [runner] = [task for task in asyncio.all_tasks() if task.get_name() == "runner"]
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["checks"]["runner"] == "stopped"


async def test_metrics_count_requests_by_route_template_and_status(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    labels = {"route": "/scim/v2/Users/{id}", "method": "GET", "status": "404"}
    before = metric_value(
        (await http.get("http://scim.test/metrics")).text, "scimledger_http_requests_total", labels
    )
    for _ in range(3):
        response = await http.get(f"/Users/{uuid.uuid4()}", headers=tenant.headers)
        assert response.status_code == 404
    scraped = await http.get("http://scim.test/metrics")
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert metric_value(text, "scimledger_http_requests_total", labels) == before + 3
    assert (
        metric_value(
            text,
            "scimledger_http_request_duration_seconds_count",
            {"route": "/scim/v2/Users/{id}", "method": "GET"},  # the series of this test's method
        )
        >= 3
    )
    # An id never becomes a label: routes are templates, so the series stay few.
    templates = text.replace("/scim/v2/Users/{id}", "").replace("/scim/v2/Users/.search", "")
    assert 'route="/scim/v2/Users/' not in templates
    assert metric_value(text, "scimledger_db_pool_connections", {"state": "max"}) > 0
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"scimledger_projection_lag_events", "scimledger_projection_lag_seconds"} <= families
    assert 'consumer="reactor.deactivation_removes_from_organization"' in text


async def test_a_request_id_that_could_forge_log_lines_is_replaced(scim: httpx.AsyncClient) -> None:
    forged = await scim.get("/Users", headers={"X-Request-Id": "x\ny" * 100})
    assert forged.headers["x-request-id"] != "x\ny" * 100
    assert len(forged.headers["x-request-id"]) == 32


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged at the default level, formatted as `serve` formats it."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter(verbose=False))
    # The test's own HTTP client logs the URLs it requests; the service never runs it.
    handler.addFilter(lambda record: not record.name.startswith("httpx"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield output
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_logs_at_the_default_level_carry_no_names_or_email_addresses(
    scim: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"zelda.{uuid.uuid4().hex[:8]}@hyrule.example"
    body = okta_user(email, name={"givenName": "Zeldanora", "familyName": "Hyrulewitz"})
    with captured_logs() as output:
        created = await scim.post("/Users", json=body, headers={"X-Request-Id": "pii-check"})
        assert created.status_code == 201
        assert (await scim.post("/Users", json=body)).status_code == 409
        assert (await scim.get("/Users", params={"filter": f'userName eq "{email}"'})).status_code == 200
        assert (await scim.get(f"/Users/{email}")).status_code == 404
        user_id = created.json()["id"]

        # What a failure's message might quote; the traceback shows source lines, never values.
        message = f"could not load {email} ({body['name']['givenName']} {body['name']['familyName']})"

        async def fail(*args: object, **kwargs: object) -> None:
            raise RuntimeError(message)

        monkeypatch.setattr(UserService, "get", fail)
        unhandled = await scim.get(f"/Users/{user_id}")
        assert unhandled.status_code == 500
        assert unhandled.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    lines = [msgspec.json.decode(line) for line in output.getvalue().splitlines()]
    text = output.getvalue()
    for secret in (email, email.split("@")[0], "Zeldanora", "Hyrulewitz"):
        assert secret not in text
    access = [line for line in lines if line["logger"] == "scimledger.access"]
    assert [line["status"] for line in access] == [201, 409, 200, 404, 500]
    assert access[0]["request_id"] == "pii-check"
    assert access[0]["route"] == "/scim/v2/Users"
    [failure] = [line for line in lines if line["level"] == "error"]
    assert "RuntimeError" in failure["traceback"]
    assert "fail" in failure["traceback"]  # where it failed is kept


@pytest.mark.parametrize("shared", [False, True], ids=["per process", "shared"])
async def test_a_token_over_its_rate_limit_gets_a_scim_429_with_retry_after(
    settings: Settings, pool: asyncpg.Pool, shared: bool
) -> None:
    limited = msgspec.structs.replace(
        settings, rate_limit_per_second=0.5, rate_limit_burst=3, rate_limit_shared=shared
    )
    busy, quiet = await new_tenant(pool), await new_tenant(pool)
    async with serving(limited) as client:
        statuses = [(await client.get("/scim/v2/Users", headers=busy.headers)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await client.get("/scim/v2/Users", headers=busy.headers)
        assert refused.status_code == 429
        assert refused.json()["status"] == "429"
        assert 1 <= int(refused.headers["retry-after"]) <= 2
        # Limits are per token: another organization's token is unaffected.
        assert (await client.get("/scim/v2/Users", headers=quiet.headers)).status_code == 200


async def test_a_request_the_database_cannot_answer_in_time_is_a_503_not_a_hang(
    settings: Settings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    impatient = msgspec.structs.replace(settings, database_timeout_seconds=0.5)
    async with serving(impatient) as client, pool.acquire() as blocker, blocker.transaction():
        # Another session holds the users table, as a long migration or a rebuild would.
        await blocker.execute("LOCK TABLE scim_users IN ACCESS EXCLUSIVE MODE")
        started = asyncio.get_running_loop().time()
        response = await client.get("/scim/v2/Users", headers=tenant.headers)
        waited = asyncio.get_running_loop().time() - started
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"].startswith("The service's database is unavailable or too slow")
    assert 0.4 < waited < 5
