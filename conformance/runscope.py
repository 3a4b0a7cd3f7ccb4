"""A faithful runner for Runscope (now BlazeMeter API Monitoring) test exports, such as Okta's SCIM spec test.

It executes the export's steps in order, as Runscope does: `{{variable}}` templates in the URL, headers and body;
the request; each assertion (source, property, comparison, target value); then the variable extractions that
later steps use. Assertions are evaluated with Runscope's documented semantics, reproduced in `evaluate`.
Two things a Runscope account does are done here differently, and said so in the report:
- pauses are not waited out, since they give eventually consistent servers time and scimledger answers every
  GET from state committed before the write answered (pass `honour_pauses` to wait anyway);
- JavaScript scripts are run by their Python translation in `SCRIPTS`, keyed by the script's exact text; a
  script without one is reported as skipped, never as passed.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from conformance.report import Check, Outcome, SuiteResult

TEMPLATE = re.compile(r"{{\s*([^{}]+?)\s*}}")
PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
MISSING = object()


def okta_initial_variables(rng: random.Random) -> dict[str, str]:
    """Okta's "Initial Script" for the spec test (Initial_Script_Spec.txt beside the export), in Python."""
    first_name = "Runscope" + "".join(rng.choice(string.digits) for _ in range(3))
    last_name = (
        rng.choice(string.ascii_uppercase)
        + "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
        + "".join(rng.choice(string.digits) for _ in range(3))
    )
    email = f"{first_name}{last_name}@atko.com"
    return {
        "randomGivenName": first_name,
        "randomFamilyName": last_name,
        "randomEmail": email,
        "randomUsername": email,
        "InvalidUserEmail": "abcdefgh@atko.com",
        "UserIdThatDoesNotExist": "010101001010101011001010101011",
        "randomUsernameCaps": email.upper(),
        "randomGroupName": "Runscope" + "".join(rng.choice(string.digits) for _ in range(3)),
    }


def render(template: str, variables: dict[str, str]) -> str:
    """Runscope's templates: a known `{{name}}` is replaced; an unknown one is left as written."""
    return TEMPLATE.sub(lambda match: variables.get(match.group(1), match.group(0)), template)


def lookup(document: Any, path: str) -> Any:
    """A JavaScript-style property path (`Resources[0].name.familyName`); "" is the whole body."""
    value = document
    for name, index in PATH_TOKEN.findall(path):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return MISSING
    return value


def as_text(value: Any) -> str:
    """How Runscope shows an extracted JSON value when it compares it with a target value given as text."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is MISSING or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def evaluate(comparison: str, actual: Any, target: str) -> bool:
    """One Runscope comparison of an extracted value with the (rendered) target value."""
    if comparison == "equal":
        return actual is not MISSING and as_text(actual) == target
    if comparison == "not_equal":
        return as_text(actual) != target
    if comparison in ("equal_number", "is_less_than", "is_less_than_or_equal", "is_greater_than"):
        left, right = as_number(actual), as_number(target)
        if left is None or right is None:
            return False
        return {
            "equal_number": left == right,
            "is_less_than": left < right,
            "is_less_than_or_equal": left <= right,
            "is_greater_than": left > right,
        }[comparison]
    if comparison == "not_empty":
        return actual is not MISSING and actual is not None and actual not in ("", [], {})
    if comparison == "empty":
        return actual is MISSING or actual is None or actual in ("", [], {})
    if comparison == "is_a_number":
        return as_number(actual) is not None
    if comparison == "contains":
        return actual is not MISSING and target in as_text(actual)
    if comparison == "does_not_contain":
        return target not in as_text(actual)
    if comparison == "has_value":
        return any(as_text(value) == target for value in scalar_values(actual))
    if comparison == "has_key":
        return isinstance(actual, dict) and target in actual
    raise ValueError(f"Runscope comparison {comparison!r} is not implemented by this runner")


def scalar_values(actual: Any) -> list[Any]:
    """What "has value" searches: the items of an array or the values of an object, and those nested in them.
    Runscope documents "has value" for arrays and objects, not how deep it looks. Okta's spec test asserts it on
    the whole 401 body (an empty property) for the Error URN, which RFC 7644 §3.12 bodies carry inside `schemas`,
    and servers with such bodies report that test passing in Runscope: Runscope looks inside."""
    if isinstance(actual, dict):
        return [value for nested in actual.values() for value in scalar_values(nested)]
    if isinstance(actual, list):
        return [value for nested in actual for value in scalar_values(nested)]
    return [] if actual is MISSING else [actual]


def okta_groups_script(body: Any) -> list[tuple[str, bool]]:
    """`var data = JSON.parse(response.body); ... if (max === 0) assert("nogroups", ...) else if (max >= 1 &&
    Array.isArray(res)) { assert.ok(exists, "Resources is of type Array") }`: chai's assert(value) passes on a
    truthy value, so each branch asserts something that holds; neither branch, no assertion."""
    total = body.get("totalResults") if isinstance(body, dict) else None
    if total == 0:
        return [("No Groups found in the endpoint", True)]
    if isinstance(total, int | float) and total >= 1 and isinstance(body.get("Resources"), list):
        return [("Resources is of type Array", True)]
    if not isinstance(body, dict):
        # JSON.parse threw: the script fails.
        return [("JSON.parse(response.body)", False)]
    return []


# Each translated script, keyed by its exact source text in the export.
SCRIPTS: dict[str, Callable[[Any], list[tuple[str, bool]]]] = {
    "var data = JSON.parse(response.body);\nvar max = data.totalResults;\nvar res = data.Resources;\n"
    'var exists = false;\n\nif (max === 0)\n\tassert("nogroups", "No Groups found in the endpoint");\n'
    'else if (max >= 1 && Array.isArray(res)) {\n    exists = true;\n    assert.ok(exists, "Resources is of '
    'type Array");\n\tlog(exists);\n}': okta_groups_script,
}


class StandIn(Protocol):
    """Plays a step the runner cannot send, such as a call to a live Okta org's own API, by sending the SCIM
    requests that the step makes Okta send. The step's own assertions are about that other API: skipped."""

    def handles(self, step: dict[str, Any]) -> bool: ...

    def play(self, step: dict[str, Any], variables: dict[str, str], client: httpx.Client) -> str:
        """Send the SCIM requests; what was sent and answered, for the report."""
        ...


def target_of(assertion: dict[str, Any], variables: dict[str, str]) -> str:
    """The target value as text, rendered: exports give it as text, a number (200) or null."""
    value = assertion.get("value")
    return render("" if value is None else str(value), variables)


def describe(assertion: dict[str, Any], target: str) -> str:
    prop = assertion.get("property")
    where = assertion["source"] + (f" {prop!r}" if prop is not None else "")
    return f"{where} {assertion['comparison']}" + (
        f" {target!r}" if assertion.get("value") is not None else ""
    )


def exchange(response: httpx.Response) -> str:
    request = response.request
    sent = request.content.decode(errors="replace")
    return (
        f"request: {request.method} {request.url}" + (f"\n  body: {sent}" if sent else "") + "\n"
        f"response: {response.status_code} {response.text[:600]}"
    )


def run_export(
    export_path: Path,
    variables: dict[str, str],
    suite_name: str,
    source: str,
    honour_pauses: bool = False,
    stand_in: StandIn | None = None,
) -> SuiteResult:
    export = json.loads(export_path.read_text())
    result = SuiteResult(name=suite_name, source=source)
    waited = 0.0
    with httpx.Client(timeout=30) as client:
        for step in export["steps"]:
            if step["step_type"] == "pause":
                waited += step["duration"]
                if honour_pauses:
                    time.sleep(step["duration"])
                continue
            if stand_in is not None and stand_in.handles(step):
                played = stand_in.play(step, variables, client)
                for assertion in step["assertions"]:
                    target = target_of(assertion, variables)
                    check = Check(
                        render(step["note"], variables), describe(assertion, target), Outcome.SKIPPED, played
                    )
                    result.checks.append(check)
                continue
            run_step(client, step, variables, result)
    if not honour_pauses and waited:
        result.notes.append(f"the export's pauses ({waited:.0f} s in all) were not waited out")
    return result


def run_step(
    client: httpx.Client, step: dict[str, Any], variables: dict[str, str], result: SuiteResult
) -> None:
    name = render(step["note"], variables)
    headers: list[tuple[str, str]] = []
    for header, values in step.get("headers", {}).items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((header, render(value, variables)))
    body = render(step["body"], variables).encode() if step.get("body") else None
    started = time.perf_counter()
    try:
        response = client.request(
            step["method"], render(step["url"], variables), headers=headers, content=body
        )
    except httpx.HTTPError as error:
        for assertion in step["assertions"]:
            target = target_of(assertion, variables)
            result.checks.append(Check(name, describe(assertion, target), Outcome.FAILED, repr(error)))
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    try:
        document: Any = response.json()
    except ValueError:
        document = MISSING
    for assertion in step["assertions"]:
        target = target_of(assertion, variables)
        source = assertion["source"]
        if source == "response_status":
            actual: Any = response.status_code
        elif source == "response_time":
            actual = elapsed_ms
        elif source == "response_text":
            actual = response.text
        elif source == "response_headers":
            actual = response.headers.get(assertion.get("property", ""), MISSING)
        else:
            actual = lookup(document, assertion.get("property") or "") if document is not MISSING else MISSING
        passed = evaluate(assertion["comparison"], actual, target)
        detail = "" if passed else f"actual: {as_text(actual)!r}\n{exchange(response)}"
        outcome = Outcome.PASSED if passed else Outcome.FAILED
        result.checks.append(Check(name, describe(assertion, target), outcome, detail))
    for script in step.get("scripts", []):
        if not script.strip():
            continue
        translation = SCRIPTS.get(script)
        if translation is None:
            result.checks.append(
                Check(name, "script", Outcome.SKIPPED, "no Python translation of this script")
            )
            continue
        for message, passed in translation(document if document is not MISSING else None):
            detail = "" if passed else exchange(response)
            result.checks.append(
                Check(name, f"script: {message}", Outcome.PASSED if passed else Outcome.FAILED, detail)
            )
    for extraction in step.get("variables", []):
        if extraction.get("name") and extraction.get("source") == "response_json" and document is not MISSING:
            value = lookup(document, extraction.get("property") or "")
            if value is not MISSING:
                variables[extraction["name"]] = as_text(value)
