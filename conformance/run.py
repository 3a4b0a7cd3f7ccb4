"""`make conformance`: start scimledger, set up one organization per suite through the CLI, run every suite that
can run here, and print each suite's counts and every failure.

Each suite gets an organization of its own (with a project and a role, so that an app-owned group exists), since
the suites count users (Microsoft's expects exactly 5 at one point) and would see each other's otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from conformance.classification import explain, explanations_now_passing, unexplained_failures
from conformance.harness import Server, server_environment
from conformance.microsoft import run_microsoft_suite
from conformance.okta_org import OktaOrgStandIn, okta_crud_variables, provision_like_okta
from conformance.python_scim import run_scim2_tester
from conformance.report import Check, Outcome, SuiteResult, print_results
from conformance.runscope import okta_initial_variables, run_export

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".conformance"
OKTA_SPEC = Path(__file__).with_name("suites") / "okta-scim-2.0-spec-test.json"
OKTA_CRUD = Path(__file__).with_name("suites") / "okta-scim-2.0-crud-test.json"
OKTA_SOURCE = "Okta SCIM 2.0 SPEC Test (Runscope export), run by conformance/runscope.py"
OKTA_CRUD_SOURCE = (
    "Okta SCIM 2.0 CRUD Test (Runscope export), run by conformance/runscope.py; its Okta API steps stood in "
    "for by conformance/okta_org.py"
)

# What cannot run here, said with every run so the counts are read with it.
NOT_RUNNABLE = [
    "Okta SCIM 2.0 CRUD Test, as published: 8 of its 13 requests call a live Okta org's own API "
    "({{oktaOrgUrl}}/api/v1/..., SSWS token). Run above with those 8 stood in for; as published it needs an Okta org.",
    "Okta SCIM 2.0 Entitlements Test: GETs one of the server's entitlement endpoints (Okta Identity Governance, "
    "{{EntitlementEndpoint}}); scimledger publishes no entitlement resource type (access is Project × Role groups).",
    "Microsoft's SCIM Validator (Entra admin center) is a hosted web tool; its successor, the Logic App "
    "validation template in AzureAD/SCIMReferenceCode, runs in an Azure subscription against an Entra tenant: "
    "not runnable here.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--newman", type=Path, default=WORK / "node_modules" / ".bin" / "newman")
    parser.add_argument("--tester-python", type=Path, default=WORK / "venv" / "bin" / "python")
    parser.add_argument("--honour-pauses", action="store_true", help="wait out the Runscope export's pauses")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of Okta's random names (to replay a run)"
    )
    args = parser.parse_args(argv)

    WORK.mkdir(exist_ok=True)
    data_dir = WORK / "data"
    # A fresh embedded database each run, so that counts never depend on an earlier run.
    shutil.rmtree(data_dir, ignore_errors=True)
    env = server_environment(data_dir)
    # The suites measure conformance, not their own request rate: scim2-tester alone sends more than the
    # default burst in a few seconds, and the 429s would be counted as failures of unrelated checks.
    env["SCIMLEDGER_RATE_LIMIT_PER_SECOND"] = "0"
    server = Server(env, WORK / "serve.log")
    run_id = time.strftime("%Y%m%d-%H%M%S")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    results: list[SuiteResult] = []
    server.start()
    try:
        tenant = server.new_tenant(f"conformance-scim2-tester-{run_id}")
        results.append(run_scim2_tester(args.tester_python, tenant))

        tenant = server.new_tenant(f"conformance-okta-{run_id}")
        # Okta's spec test reads the first user of the app before creating its own: Okta's test plan has the
        # tester provision one first. This is that user, created as Okta creates users.
        variables = okta_initial_variables(random.Random(seed))
        variables |= {"SCIMBaseURL": tenant.base_url, "auth": tenant.authorization}
        provision_like_okta(tenant.base_url, tenant.authorization, "first.user@example.com")
        okta = run_export(OKTA_SPEC, variables, "Okta SCIM 2.0 SPEC Test", OKTA_SOURCE, args.honour_pauses)
        okta.notes.append(f"random names seeded with --seed {seed}")
        results.append(okta)

        tenant = server.new_tenant(f"conformance-okta-crud-{run_id}")
        variables = okta_crud_variables(random.Random(seed), tenant.base_url, tenant.authorization)
        stand_in = OktaOrgStandIn(tenant.base_url, tenant.authorization)
        crud = run_export(
            OKTA_CRUD, variables, "Okta SCIM 2.0 CRUD Test", OKTA_CRUD_SOURCE, args.honour_pauses, stand_in
        )
        results.append(crud)

        tenant = server.new_tenant(f"conformance-microsoft-{run_id}")
        results.append(run_microsoft_suite(args.newman, tenant, WORK))
    finally:
        server.stop()
    print_results(results, describe_explanation)
    print("\n=== Not runnable here")
    for reason in NOT_RUNNABLE:
        print(f"  {reason}")
    print("\n=== Failures by class")
    for result in results:
        kinds = Counter(
            entry.kind if (entry := explain(result.name, check)) else "NOT EXPLAINED"
            for check in result.checks
            if check.outcome is Outcome.FAILED
        )
        print(f"  {result.name}: " + (", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "none"))
    unexplained = unexplained_failures(results)
    print(f"\n=== Failures nobody has explained yet: {len(unexplained)}")
    for suite, check in unexplained:
        print(f"  {suite}: {check.step} :: {check.assertion}")
    print(
        "\n=== Explained failures that no longer fail (fixed? update conformance/classification.py and RESULTS.md)"
    )
    for entry in explanations_now_passing(results):
        print(f"  {entry.suite}: {entry.step} :: {entry.why}")
    (WORK / "last-run.json").write_text(json.dumps([asdict(result) for result in results], indent=1))
    print(f"\nFull results: {WORK / 'last-run.json'}; server log: {WORK / 'serve.log'}")
    # A failure nobody has explained is news: the exit status says so, for a script or CI to act on.
    return 1 if unexplained else 0


def describe_explanation(suite: str, check: Check) -> str | None:
    entry = explain(suite, check)
    return f"{entry.kind}: {entry.why}" if entry else None


if __name__ == "__main__":
    sys.exit(main())
