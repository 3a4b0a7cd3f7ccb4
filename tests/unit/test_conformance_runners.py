"""The conformance runners read the published suites as their own tools do: Runscope's comparisons, and the
Postman collection rebuilt from the encoded Microsoft suite with its scripts verbatim."""

import json
import random

import pytest

from conformance.classification import Kind, explain, explanations_now_passing, unexplained_failures
from conformance.microsoft import SUITE, build_collection, declared_tests, requests_in_order
from conformance.report import Check, Outcome, SuiteResult
from conformance.runscope import MISSING, evaluate, lookup, okta_initial_variables, render

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def test_a_property_path_reads_arrays_and_objects_and_misses_what_is_absent() -> None:
    body = {"Resources": [{"name": {"familyName": "Jensen"}, "emails": [{"value": "b@x"}]}]}
    assert lookup(body, "Resources[0].name.familyName") == "Jensen"
    assert lookup(body, "Resources[0].emails[0].value") == "b@x"
    assert lookup(body, "Resources[1].id") is MISSING
    assert lookup(body, "") == body


@pytest.mark.parametrize(
    ("comparison", "actual", "target", "holds"),
    [
        ("equal", True, "true", True),
        ("equal", "true", "true", True),
        ("equal", False, "true", False),
        ("equal", 0, "0", True),
        ("equal", MISSING, "", False),
        ("equal_number", 200, "200", True),
        ("equal_number", "0", "0", True),
        ("equal_number", 201, "200", False),
        ("not_empty", False, "", True),
        ("not_empty", "", "", False),
        ("not_empty", [], "", False),
        ("not_empty", MISSING, "", False),
        ("is_a_number", 3, "", True),
        ("is_a_number", True, "", False),
        ("is_a_number", MISSING, "", False),
        ("has_value", [ERROR], ERROR, True),
        ("has_value", ["other"], ERROR, False),
        # Okta's 401 check asks the whole error body for the URN that RFC 7644 §3.12 puts in `schemas`.
        ("has_value", {"schemas": [ERROR], "status": "401"}, ERROR, True),
        ("has_value", {"schemas": ["urn:other"], "status": "401"}, ERROR, False),
        ("has_value", {"status": "401"}, "401", True),
        ("has_value", MISSING, ERROR, False),
        ("contains", ["urn:ietf:params:scim:schemas:core:2.0:User"], "core:2.0:User", True),
        ("is_less_than", 12.5, "600", True),
        ("is_less_than", 601, "600", False),
    ],
)
def test_runscope_comparisons(comparison: str, actual: object, target: str, holds: bool) -> None:
    assert evaluate(comparison, actual, target) is holds


def test_an_unknown_comparison_stops_the_run_rather_than_passing() -> None:
    with pytest.raises(ValueError, match="is_a_palindrome"):
        evaluate("is_a_palindrome", "abba", "")


def test_templates_are_rendered_and_unknown_ones_left_as_written() -> None:
    variables = okta_initial_variables(random.Random(1))
    rendered = render('{{SCIMBaseURL}}/Users?filter=userName eq "{{randomUsernameCaps}}"', variables)
    assert rendered == f'{{{{SCIMBaseURL}}}}/Users?filter=userName eq "{variables["randomUsername"].upper()}"'
    assert variables["randomUsername"] == variables["randomEmail"]
    assert variables["randomUsername"].endswith("@atko.com")


def test_the_microsoft_collection_has_every_request_and_test_of_the_published_one() -> None:
    suite = json.loads(SUITE.read_text())
    collection, skipped = build_collection(suite)
    requests = list(requests_in_order(collection["item"]))
    # The published collection: 79 requests with 108 pm.test assertions, of which the Token request (and its
    # one test) is the reference server's own and is left out, with the reason.
    assert len(requests) == 78
    assert sum(len(declared_tests(request)) for _, request in requests_in_order(suite["item"])) == 108
    assert [item["name"] for item in skipped] == ["Get Token"]
    assert all(request["request"]["auth"]["bearer"][0]["value"] == "{{token}}" for _, request in requests)
    paginate = next(r for name, r in requests if name.endswith("/ Paginate"))
    assert (
        paginate["request"]["url"] == "{{Protocol}}://{{Server}}{{Port}}/{{Api}}/Users?startIndex=1&count=2"
    )
    assert paginate["event"][0]["script"]["exec"][2] == "    pm.expect(jsonData.totalResults).to.eql(5);"


def test_the_deliberately_broken_body_is_sent_as_the_suite_wrote_it() -> None:
    collection, _ = build_collection(json.loads(SUITE.read_text()))
    junk = next(r for name, r in requests_in_order(collection["item"]) if name.endswith("/ Post junk"))
    raw = junk["request"]["body"]["raw"]
    assert raw.startswith('{\r\n    "acve": tre,')
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


def test_a_failure_is_told_apart_from_one_already_explained() -> None:
    tester = SuiteResult("scim2-tester", "test")
    tester.checks = [
        Check("Group: object_creation", "ERROR", Outcome.FAILED),
        Check("User: object_creation", "ERROR", Outcome.FAILED),
    ]
    explained = explain("scim2-tester", tester.checks[0])
    assert explained is not None
    assert explained.kind is Kind.DESIGN
    assert unexplained_failures([tester]) == [("scim2-tester", tester.checks[1])]
    assert explanations_now_passing([tester]) == []
    # Once no Group check fails, the explanation of their failures is stale: the run says so, so that the
    # table is updated.
    tester.checks = [Check("Group: object_creation", "SUCCESS", Outcome.PASSED)]
    assert [entry.step for entry in explanations_now_passing([tester])] == ["^Group: "]
