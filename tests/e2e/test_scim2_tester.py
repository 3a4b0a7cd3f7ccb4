"""python-scim's scim2-tester, a conformance suite real SCIM clients are checked with, against `scimledger
serve` under uvicorn: every check on the User resource passes, and the Group checks fail only because groups
are the app's (created for each Project × Role, never through SCIM)."""

from collections.abc import Iterator

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server

from app.http.group_routes import CREATE_REFUSED
from tests.service import ServiceProcess, new_org

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(cli_env: dict[str, str]) -> Iterator[list[CheckResult]]:
    env = {
        **cli_env,
        "SCIMLEDGER_LOG_LEVEL": "warning",
        # The suite sends a hundred-odd requests as fast as it can.
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "10000",
        "SCIMLEDGER_RATE_LIMIT_BURST": "10000",
        "SCIMLEDGER_ORG_CONCURRENCY": "1000",
    }
    service = ServiceProcess(env).start()
    try:
        [token] = new_org(service.env, "scim2-tester", "scim")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx2.Client(base_url=service.base, headers=headers, timeout=10) as http:
            yield check_server(SyncSCIMClient(http))
    finally:
        assert service.stop() == 0, service.output()


def _failures(results: list[CheckResult], resource_type: str | None) -> list[str]:
    return [
        f"{result.title}: {result.reason}"
        for result in results
        if result.resource_type == resource_type and result.status != Status.SUCCESS
    ]


def test_every_check_of_discovery_and_of_the_user_resource_passes(results: list[CheckResult]) -> None:
    assert [result for result in results if result.resource_type == "User"], "the suite checked Users"
    assert _failures(results, "User") == []
    assert _failures(results, None) == []


def test_group_checks_fail_only_because_groups_are_created_in_the_app(results: list[CheckResult]) -> None:
    failures = _failures(results, "Group")
    assert failures, "the suite tries to create groups, which the app refuses"
    assert [failure for failure in failures if CREATE_REFUSED not in failure] == []
