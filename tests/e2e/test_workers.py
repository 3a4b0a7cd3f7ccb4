"""`scimledger serve --workers N`: N processes on one port, uvicorn's supervisor over them. What must hold
across processes is in the database (uniqueness, versions); see docs/scaling.md, *Many processes*."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest

from app.cli.exits import ExitCode
from tests.conftest import okta_user
from tests.service import ServiceProcess, new_org, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def service_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {
        **cli_env,
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
        "SCIMLEDGER_ORG_CONCURRENCY": "100",  # the race below comes from one organization's 24 clients
        "SCIMLEDGER_TOKEN_CONCURRENCY": "100",
    }


@pytest.fixture
def two_workers(service_env: dict[str, str]) -> Iterator[ServiceProcess]:
    service = ServiceProcess(service_env, args=("--workers", "2")).start()
    try:
        yield service
    finally:
        assert service.stop() == ExitCode.OK, service.output()
        assert _serving_processes(service) == [], "SIGTERM stops every process"


def _serving_processes(service: ServiceProcess) -> list[psutil.Process]:
    """The processes uvicorn's supervisor started to serve (multiprocessing's spawn children)."""
    assert service.process is not None
    try:
        children = psutil.Process(service.process.pid).children()
    except psutil.NoSuchProcess:
        return []
    serving = []
    for child in children:
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                serving.append(child)
        except psutil.NoSuchProcess:
            continue
    return serving


async def _post(base: str, token: str, body: dict[str, object]) -> int:
    # A client per request: a connection of its own, which either process may accept.
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{base}/Users", json=body, headers={"Authorization": f"Bearer {token}"})
        return response.status_code


async def test_two_processes_serve_and_a_username_is_still_taken_only_once(
    two_workers: ServiceProcess, service_env: dict[str, str]
) -> None:
    assert len(_serving_processes(two_workers)) == 2
    [token] = new_org(service_env, f"Workers {uuid.uuid4().hex[:6]}", "scim")
    user_name = f"race-{uuid.uuid4().hex[:8]}@example.com"
    statuses = await asyncio.gather(
        *(_post(two_workers.base, token, okta_user(user_name)) for _ in range(24))
    )
    assert sorted(statuses) == [201] + [409] * 23
    async with httpx.AsyncClient(timeout=30) as client:
        found = await client.get(
            f"{two_workers.base}/Users",
            params={"filter": f'userName eq "{user_name.upper()}"'},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert found.json()["totalResults"] == 1


async def test_a_process_that_dies_is_replaced_and_the_other_serves_meanwhile(
    two_workers: ServiceProcess, service_env: dict[str, str]
) -> None:
    [token] = new_org(service_env, f"Workers {uuid.uuid4().hex[:6]}", "scim")
    first, second = _serving_processes(two_workers)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    # Every request now reaches the survivor (or the replacement, once it is up): none is refused.
    statuses = [
        await _post(two_workers.base, token, okta_user(f"after-{index}-{uuid.uuid4().hex[:6]}@example.com"))
        for index in range(10)
    ]
    assert statuses == [201] * 10
    deadline = time.monotonic() + 60
    while {process.pid for process in _serving_processes(two_workers)} in ({second.pid}, set()):
        assert time.monotonic() < deadline, two_workers.output()
        await asyncio.sleep(0.2)
    processes = _serving_processes(two_workers)
    assert second.pid in {process.pid for process in processes}
    assert first.pid not in {process.pid for process in processes}


def test_workers_must_be_one_or_more(service_env: dict[str, str]) -> None:
    for workers in ("0", "two"):
        refused = run_cli(service_env, "serve", "--workers", workers, check=False)
        assert refused.returncode == ExitCode.USAGE
        assert "1 or more" in refused.stderr
