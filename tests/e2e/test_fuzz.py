"""Schemathesis against `scimledger serve` under uvicorn, from the service's own /openapi.json.

Every operation gets generated requests, valid and invalid by the schema; no response may be a 5xx, and
every response must conform to the description: its status documented, its body valid against the
documented schema, its content type the documented one. `make test` runs a bounded number of cases per
operation (SCIMLEDGER_FUZZ_EXAMPLES, default 20); `make fuzz` runs many more.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.http import openapi
from tests.conftest import AUDIT_SIGNING_KEY, FUZZ_CASES, okta_user
from tests.service import ServiceProcess, run_cli

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("SCIMLEDGER_FUZZ_EXAMPLES", "20"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# Not negative_data_rejection: requests that break the description still get generated, and must still get no
# 5xx and a conforming (SCIM error) response, but the service ignores query parameters and headers it does
# not know, as SCIM clients send their own, which that check counts as accepting invalid data.


@dataclass
class Target:
    service: ServiceProcess
    scim: str
    auditor: str
    platform: str
    org_id: str


@pytest.fixture(scope="module")
def target(cli_env: dict[str, str]) -> Iterator[Target]:
    env = {
        **cli_env,
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
        "SCIMLEDGER_LOG_LEVEL": "warning",
        # A deployment that signs evidence bundles (GET /audit/export), as production must be configured.
        "SCIMLEDGER_AUDIT_SIGNING_KEY": AUDIT_SIGNING_KEY,
    }
    service = ServiceProcess(env).start()
    org = f"Fuzz {uuid.uuid4().hex[:6]}"
    created = run_cli(env, "org", "create", org)
    org_id = created.stdout.strip().splitlines()[-1]
    scim, auditor = (
        run_cli(env, "token", "issue", "--org", org, "--scope", scope).stdout.strip()
        for scope in ("scim", "auditor")
    )
    platform = run_cli(env, "token", "issue", "--scope", "platform").stdout.strip()
    # Something for the generated requests to find: groups exist only for a project × role.
    run_cli(env, "project", "create", "--org", org, "Fuzzing")
    run_cli(env, "role", "create", "--org", org, "Member")
    httpx.post(
        f"{service.base}/Users",
        json=okta_user("seed@fuzz.example"),
        headers={"Authorization": f"Bearer {scim}"},
    ).raise_for_status()
    yield Target(service, scim, auditor, platform, org_id)
    assert service.stop() == 0, service.output()


# The description as the app builds it; `test_the_served_description_is_the_one_fuzzed` checks that the
# running service serves exactly this.
schema = schemathesis.openapi.from_dict(openapi.document())


def test_the_served_description_is_the_one_fuzzed(target: Target) -> None:
    assert httpx.get(f"{target.service.root}/openapi.json").json() == openapi.document()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_server_error_and_every_response_conforms(
    case: schemathesis.Case, target: Target, request: pytest.FixtureRequest
) -> None:
    token = (
        target.auditor
        if case.path.startswith("/audit")
        else target.platform
        if case.path.startswith("/api/")
        else target.scim
    )
    request.config.stash[FUZZ_CASES][case.operation.label] += 1
    if case.path_parameters and "org" in case.path_parameters:
        # The management API's routes about one organization: the fuzzed one, so that the generated requests
        # reach the routes' own code rather than stopping at a 404 for an organization that does not exist.
        case.path_parameters["org"] = target.org_id
    case.call_and_validate(
        base_url=target.service.root, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=30
    )
