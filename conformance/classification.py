"""Why each failure found on the day the suites were first run is a failure (conformance/RESULTS.md has the table).

Every failing check is matched against these entries and printed with its class, so that after a change the run
shows at a glance a failure nobody has explained yet, and an explained failure that now passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from conformance.report import Check, Outcome, SuiteResult


class Kind(StrEnum):
    BUG = "bug in scimledger"
    DESIGN = "app-owned groups design"
    SUITE = "suite departs from RFC 7643/7644"


@dataclass(frozen=True)
class Explained:
    suite: str
    step: str  # a regular expression the check's step must match
    assertion: str  # and one its assertion must match
    kind: Kind
    why: str

    def matches(self, suite: str, check: Check) -> bool:
        return (
            suite == self.suite
            and re.search(self.step, check.step) is not None
            and re.search(self.assertion, check.assertion) is not None
        )


TESTER = "scim2-tester"
MICROSOFT = "Microsoft SCIM reference tests (Postman)"
GROUPS_FROM_THE_APP = (
    "groups are the app's Project × Role pairs: POST /Groups is refused (403) and DELETE unlinks, so every check "
    "built on a group the suite creates fails with it (README, Push Groups)"
)

EXPLAINED = [
    Explained(TESTER, r"^Group: ", "", Kind.DESIGN, GROUPS_FROM_THE_APP),
    Explained(MICROSOFT, r"^Group tests( with garbage)? / ", "", Kind.DESIGN, GROUPS_FROM_THE_APP),
    Explained(MICROSOFT, r"^Teardown garbage / Delete group 1$", "", Kind.DESIGN, GROUPS_FROM_THE_APP),
    Explained(
        MICROSOFT,
        r"^Get all groups$",
        r"^Groups cleared$",
        Kind.DESIGN,
        "the organization's Project × Role group stays: SCIM cannot delete the app's groups",
    ),
    Explained(
        MICROSOFT,
        r"^ComplexAttribute tests / Get user (attributes|via attributes filter)$",
        "",
        Kind.SUITE,
        "a value filter in `attributes`: RFC 7644 §3.9 requires attribute names in the notation of §3.10",
    ),
    Explained(
        MICROSOFT,
        r"^User tests with garbage / [Pp]atch user omalley ",
        r"^Status code is 204$",
        Kind.SUITE,
        "PATCH answered 200 with the resource, which RFC 7644 §3.5.2 requires unless the server chooses 204",
    ),
    Explained(
        MICROSOFT,
        r"^User tests with garbage / filter ",
        r"^Total results$",
        Kind.SUITE,
        "unquoted comparison values: RFC 7644 §3.4.2.2's compValue is a JSON false, null, true, number or string",
    ),
]


def explain(suite: str, check: Check) -> Explained | None:
    return next((entry for entry in EXPLAINED if entry.matches(suite, check)), None)


def unexplained_failures(results: list[SuiteResult]) -> list[tuple[str, Check]]:
    return [
        (result.name, check)
        for result in results
        for check in result.checks
        if check.outcome is Outcome.FAILED and explain(result.name, check) is None
    ]


def explanations_now_passing(results: list[SuiteResult]) -> list[Explained]:
    """Entries that no failing check matches any more: the failure they explain is gone (fixed, or changed)."""
    failing = [
        (result.name, check)
        for result in results
        for check in result.checks
        if check.outcome is Outcome.FAILED
    ]
    ran = {result.name for result in results}
    return [
        entry
        for entry in EXPLAINED
        if entry.suite in ran and not any(entry.matches(suite, check) for suite, check in failing)
    ]
