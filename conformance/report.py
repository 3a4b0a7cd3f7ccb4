"""What a suite found: one `Check` per assertion the suite makes, and how a run is printed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    step: str
    assertion: str
    outcome: Outcome
    detail: str = ""


@dataclass
class SuiteResult:
    name: str
    source: str
    checks: list[Check] = field(default_factory=list)
    # Why the suite, or part of it, cannot run here: printed with the counts.
    notes: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for check in self.checks if check.outcome is outcome)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.count(Outcome.PASSED)} passed, {self.count(Outcome.FAILED)} failed, "
            f"{self.count(Outcome.SKIPPED)} skipped"
        )


def print_results(results: list[SuiteResult], explain: Callable[[str, Check], str | None]) -> None:
    """Counts and every failure, each with its explanation when it has one (`explain`)."""
    for result in results:
        print(f"\n=== {result.name}\n    source: {result.source}")
        for note in result.notes:
            print(f"    note: {note}")
        for check in result.checks:
            if check.outcome is not Outcome.PASSED:
                print(f"  {check.outcome.upper()}: {check.step} :: {check.assertion}")
                if check.outcome is Outcome.FAILED:
                    print(
                        f"      [{explain(result.name, check) or 'NOT EXPLAINED: see conformance/RESULTS.md'}]"
                    )
                if check.detail:
                    print("      " + check.detail.replace("\n", "\n      "))
        print(f"  {result.summary()}")
    print("\n=== Counts")
    for result in results:
        print(f"  {result.summary()}")
