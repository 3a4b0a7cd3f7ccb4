"""scim2-tester 0.5 (python-scim), the conformance checker the issue measures User against."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conformance.harness import Tenant
from conformance.report import Check, Outcome, SuiteResult

PROBE = Path(__file__).with_name("scim2_tester_probe.py")
# scim2-tester's statuses: SUCCESS (MUST met), COMPLIANT (SHOULD met) and ACCEPTABLE (a MAY, or robustness)
# pass; DEVIATION (a SHOULD missed), ERROR (a MUST missed) and CRITICAL fail, as `scim2 test` counts them.
PASSING = {"SUCCESS", "COMPLIANT", "ACCEPTABLE"}


def run_scim2_tester(python: Path, tenant: Tenant) -> SuiteResult:
    result = SuiteResult(name="scim2-tester", source="PyPI scim2-tester 0.5 through scim2-cli's `scim2 test`")
    done = subprocess.run(
        [str(python), str(PROBE), tenant.base_url],
        env={**os.environ, "SCIM_AUTHORIZATION": tenant.authorization},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scim2-tester did not run:\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        found = json.loads(line)
        outcome = (
            Outcome.PASSED
            if found["status"] in PASSING
            else Outcome.SKIPPED
            if found["status"] == "SKIPPED"
            else Outcome.FAILED
        )
        step = f"{found['resource_type'] or 'discovery'}: {found['title']}"
        detail = "" if outcome is Outcome.PASSED else f"{found['status']}: {found['reason']}\n{found['data']}"
        result.checks.append(Check(step, found["status"], outcome, detail))
    # The issue measures discovery and the User resource alone (the peer scim2-server has no app-owned groups).
    user_side = [check for check in result.checks if not check.step.startswith("Group:")]
    passed = sum(1 for check in user_side if check.outcome is Outcome.PASSED)
    result.notes.append(f"discovery and User alone: {passed} of {len(user_side)} pass")
    return result
