"""Microsoft's SCIM test collection (AzureAD/SCIMReferenceCode), run as Postman runs it: by newman.

The suite is kept in `suites/microsoft-scim-reference-tests.json`, item by item with its scripts verbatim; this
module rebuilds the Postman v2.1 collection from it, runs it with newman against one organization, and reads
newman's JSON report back: one check per `pm.test` assertion, plus any script that threw outside one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conformance.harness import Tenant
from conformance.report import Check, Outcome, SuiteResult

SUITE = Path(__file__).with_name("suites") / "microsoft-scim-reference-tests.json"
SOURCE = "AzureAD/SCIMReferenceCode PostmanCollection.json ('SCIM Tests'), run with newman"


def postman_request(item: dict[str, Any]) -> dict[str, Any]:
    """One request of the collection as Postman stores it: bearer {{token}}, the base URL in variables."""
    request: dict[str, Any] = {
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}]},
        "method": item["method"],
        "header": [
            {"key": name, "value": value, "type": "text"} for name, value in item.get("headers", {}).items()
        ],
        "url": "{{Protocol}}://{{Server}}{{Port}}/{{Api}}/" + item["path"],
    }
    if "body_raw" in item:
        request["body"] = {"mode": "raw", "raw": item["body_raw"]}
    elif "body" in item:
        request["body"] = {"mode": "raw", "raw": json.dumps(item["body"], indent=4, ensure_ascii=False)}
    events = [
        {"listen": listen, "script": {"exec": item[key], "type": "text/javascript"}}
        for listen, key in (("prerequest", "prerequest"), ("test", "tests"))
        if key in item
    ]
    return {"name": item["name"], "event": events, "request": request}


def postman_item(item: dict[str, Any]) -> dict[str, Any]:
    if "item" in item:
        return {"name": item["name"], "item": [postman_item(child) for child in item["item"]]}
    return postman_request(item)


def requests_in_order(items: list[dict[str, Any]], folder: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for item in items:
        if "item" in item:
            yield from requests_in_order(item["item"], item["name"])
        else:
            yield (f"{folder} / {item['name']}" if folder else item["name"]), item


def declared_tests(item: dict[str, Any]) -> list[str]:
    """The names of a request's `pm.test(...)` assertions, as its test script declares them."""
    return [line.split('"')[1] for line in item.get("tests", []) if line.lstrip().startswith('pm.test("')]


def build_collection(suite: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The runnable collection, and the top-level items left out of it (each with why, in "skip")."""
    runnable = [item for item in suite["item"] if "skip" not in item]
    skipped = [item for item in suite["item"] if "skip" in item]
    collection = {
        "info": {
            "name": suite["name"],
            "description": suite["description"],
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "item": [postman_item(item) for item in runnable],
    }
    return collection, skipped


def environment(tenant: Tenant) -> dict[str, Any]:
    base = urlsplit(tenant.base_url)
    values = {
        "Protocol": base.scheme,
        "Server": base.hostname or "127.0.0.1",
        "Port": f":{base.port}" if base.port else "",
        "Api": base.path.strip("/"),
        "token": tenant.token,
    }
    return {
        "name": "scimledger",
        "values": [{"key": k, "value": v, "enabled": True} for k, v in values.items()],
    }


def run_microsoft_suite(newman: Path, tenant: Tenant, work_dir: Path) -> SuiteResult:
    suite = json.loads(SUITE.read_text())
    collection, skipped = build_collection(suite)
    result = SuiteResult(name="Microsoft SCIM reference tests (Postman)", source=SOURCE)
    for item in skipped:
        result.notes.append(f"not run: {item['name']}: {item['skip']}")
        for name, request in requests_in_order(item["item"], item["name"]):
            for test in declared_tests(request):
                result.checks.append(Check(name, test, Outcome.SKIPPED, item["skip"]))
    collection_path = work_dir / "microsoft-collection.json"
    environment_path = work_dir / "microsoft-environment.json"
    report_path = work_dir / "microsoft-newman-report.json"
    collection_path.write_text(json.dumps(collection, indent=1, ensure_ascii=False))
    environment_path.write_text(json.dumps(environment(tenant)))
    report_path.unlink(missing_ok=True)
    with open(work_dir / "microsoft-newman.log", "w") as log:
        # newman exits 1 when an assertion fails; its JSON report is what is read.
        subprocess.run(
            [
                str(newman), "run", str(collection_path), "-e", str(environment_path),
                "--reporters", "cli,json", "--reporter-json-export", str(report_path), "--color", "off",
            ],
            stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False,
        )  # fmt: skip
    if not report_path.exists():
        raise RuntimeError(f"newman wrote no report; see {work_dir / 'microsoft-newman.log'}")
    report = json.loads(report_path.read_text())
    ordered = [name for name, _ in requests_in_order(collection["item"])]
    for name, execution in zip(ordered, report["run"]["executions"], strict=True):
        result.checks.extend(checks_of(name, execution))
    for failure in report["run"]["failures"]:
        error = failure.get("error", {})
        # A script that throws outside any pm.test (a TypeError, a JSON parse error) skips the rest of its
        # script: a failure of its own, which newman lists only here.
        if error.get("name") != "AssertionError":
            step = failure.get("source", {}).get("name", "?")
            detail = f"{error.get('name')}: {error.get('message')} (in {failure.get('at')})"
            result.checks.append(Check(step, "script ran to its end", Outcome.FAILED, detail))
    return result


def checks_of(name: str, execution: dict[str, Any]) -> list[Check]:
    exchange = describe_exchange(execution)
    if "requestError" in execution:
        return [Check(name, "request", Outcome.FAILED, str(execution["requestError"].get("message")))]
    checks = []
    for assertion in execution.get("assertions", []):
        if assertion.get("skipped"):
            checks.append(Check(name, assertion["assertion"], Outcome.SKIPPED))
        elif "error" in assertion:
            message = assertion["error"].get("message", "")
            checks.append(Check(name, assertion["assertion"], Outcome.FAILED, f"{message}\n{exchange}"))
        else:
            checks.append(Check(name, assertion["assertion"], Outcome.PASSED))
    return checks


def describe_exchange(execution: dict[str, Any]) -> str:
    request = execution.get("request", {})
    response = execution.get("response", {})
    url = request.get("url", {})
    path = "/" + "/".join(url.get("path", [])) if isinstance(url, dict) else str(url)
    query = (
        "&".join(f"{q.get('key')}={q.get('value')}" for q in url.get("query", []))
        if isinstance(url, dict)
        else ""
    )
    body = response.get("stream", {}).get("data") if isinstance(response.get("stream"), dict) else None
    text = bytes(body).decode(errors="replace")[:600] if isinstance(body, list) else ""
    sent = (request.get("body") or {}).get("raw", "")
    return (
        f"request: {request.get('method')} {path}{'?' + query if query else ''}"
        + (f"\n  body: {' '.join(sent.split())[:400]}" if sent else "")
        + f"\nresponse: {response.get('code')} {text}"
    )
