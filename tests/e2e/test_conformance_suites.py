"""Okta's published SCIM test suites, run by `make conformance`'s own runner against `scimledger serve` set up with
the CLI: every assertion that can run here holds."""

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.harness import Server, Tenant
from conformance.okta_org import OktaOrgStandIn, okta_crud_variables, provision_like_okta
from conformance.report import Outcome, SuiteResult
from conformance.run import OKTA_CRUD, OKTA_SPEC
from conformance.runscope import okta_initial_variables, run_export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    service = Server({**cli_env, "SCIMLEDGER_LOG_LEVEL": "warning"}, tmp_path_factory.mktemp("serve") / "log")
    service.start()
    yield service
    service.stop()


def failures(result: SuiteResult) -> list[str]:
    return [
        f"{check.step} :: {check.assertion}\n{check.detail}"
        for check in result.checks
        if check.outcome is Outcome.FAILED
    ]


def new_tenant(server: Server, kind: str) -> Tenant:
    return server.new_tenant(f"conformance {kind} {random.randrange(10**9)}")


def test_okta_spec_test_passes(server: Server) -> None:
    tenant = new_tenant(server, "okta spec")
    provision_like_okta(tenant.base_url, tenant.authorization, "first.user@example.com")
    variables = okta_initial_variables(random.Random()) | {
        "SCIMBaseURL": tenant.base_url,
        "auth": tenant.authorization,
    }
    result = run_export(Path(OKTA_SPEC), variables, "Okta SPEC", "test")
    assert failures(result) == []
    assert result.count(Outcome.PASSED) == 53


def test_okta_crud_test_passes_with_its_okta_side_played_by_okta_s_requests(server: Server) -> None:
    tenant = new_tenant(server, "okta crud")
    variables = okta_crud_variables(random.Random(), tenant.base_url, tenant.authorization)
    stand_in = OktaOrgStandIn(tenant.base_url, tenant.authorization)
    result = run_export(Path(OKTA_CRUD), variables, "Okta CRUD", "test", stand_in=stand_in)
    assert failures(result) == []
    # Its 5 SCIM steps' 13 assertions ran; the 8 Okta API steps' own assertions cannot, and say so.
    assert (result.count(Outcome.PASSED), result.count(Outcome.SKIPPED)) == (13, 8)


def test_a_server_that_answers_wrongly_fails_the_runner(server: Server) -> None:
    # The same suite against a base URL with no SCIM endpoints behind it: the runner must report failures, not
    # pass by default.
    tenant = new_tenant(server, "wrong base")
    variables = okta_initial_variables(random.Random()) | {
        "SCIMBaseURL": tenant.base_url.replace("/scim/v2", "/nowhere"),
        "auth": tenant.authorization,
    }
    result = run_export(Path(OKTA_SPEC), variables, "Okta SPEC", "test")
    created = [
        check
        for check in result.checks
        if check.step == "Required Test: Create Okta user with realistic values"
    ]
    assert created
    assert all(check.outcome is Outcome.FAILED for check in created)
    assert result.count(Outcome.FAILED) > 40
