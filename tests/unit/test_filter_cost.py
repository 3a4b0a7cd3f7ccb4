import uuid

import pytest
from hypothesis import given

from app.infrastructure.admission import Admission, org_concurrency, shared_by_processes, token_concurrency
from app.infrastructure.settings import Settings
from scim.errors import ScimError
from scim.filter import parse_filter
from scim.filter_cost import FilterCost, check_cost, cost, parse_bounded_filter, text_cost
from scim.filter_tree import Filter
from tests.unit.test_properties import PROPERTY, filters, paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "a"', FilterCost(1, 0)),
        ('userName co "a"', FilterCost(1, 1)),
        ('title pr and not (userName ew "x" or userName sw "y")', FilterCost(3, 1)),
        ('emails[type eq "work" and value co "@x"] or emails.value ew "z"', FilterCost(3, 2)),
        ('members[value eq "1"] and (displayName eq "a" or displayName eq "b")', FilterCost(3, 0)),
        # A multi-valued simple custom attribute: one comparison, however many values each user holds.
        (
            'urn:ietf:params:scim:schemas:extension:acme:2.0:User:skills co "py" or skills pr',
            FilterCost(2, 1),
        ),
    ],
)
def test_a_filter_costs_its_comparisons_and_those_matching_inside_strings(
    text: str, expected: FilterCost
) -> None:
    assert cost(parse_filter(text)) == expected


def test_a_filter_within_both_bounds_passes_and_one_beyond_either_is_an_invalid_filter() -> None:
    three_co = parse_filter('userName co "a" or userName co "b" or userName co "c"')
    assert check_cost(three_co, max_terms=3, max_substring_terms=3) is three_co
    for max_terms, max_substring_terms, naming in ((2, 3, "3 comparisons"), (3, 2, "3 'co' or 'ew'")):
        with pytest.raises(ScimError) as refused:
            check_cost(three_co, max_terms, max_substring_terms)
        assert (refused.value.status, refused.value.scim_type) == (400, "invalidFilter")
        assert naming in refused.value.detail


@PROPERTY
@given(filters(paths, nested=True))
def test_the_text_of_any_filter_tells_its_cost_as_its_tree_does(tree: Filter) -> None:
    text = str(tree)
    assert text_cost(text) == cost(tree)
    assert parse_bounded_filter(text, max_terms=1000, max_substring_terms=1000) == tree


def test_a_long_filter_over_the_bounds_is_refused_from_its_text_before_it_is_parsed() -> None:
    reported = " or ".join(f'emails[value co "x{index:03}"]' for index in range(143))
    with pytest.raises(ScimError, match="143 comparisons"):
        parse_bounded_filter(reported, max_terms=20, max_substring_terms=5)
    # Operators inside values are not comparisons.
    quoted = 'userName eq "' + " eq ".join(["a"] * 40) + '"'
    assert cost(parse_bounded_filter(quoted, max_terms=1, max_substring_terms=0)) == FilterCost(1, 0)


def test_the_deepest_filter_the_parser_admits_is_costed_without_recursion() -> None:
    deep = parse_filter("not (" * 300 + 'userName co "a"' + ")" * 300)
    assert cost(deep) == FilterCost(1, 1)


def test_by_default_one_organization_may_use_a_quarter_of_the_pool_and_half_the_cores_and_a_token_all_of_it() -> (
    None
):
    assert [org_concurrency(Settings(), cores) for cores in (1, 2, 4, 8, 64)] == [1, 1, 2, 2, 2]
    assert org_concurrency(Settings(pool_size=40), 64) == 10
    assert (org_concurrency(Settings(pool_size=1)), token_concurrency(Settings(pool_size=1))) == (1, 1)
    settings = Settings(org_concurrency=3, token_concurrency=8)
    assert (org_concurrency(settings), token_concurrency(settings)) == (3, 3)


def test_serve_workers_divide_the_default_cap_between_them_and_keep_one_the_operator_set() -> None:
    pooled = Settings(pool_size=40)  # by default, 10 per organization with 64 cores
    assert [
        org_concurrency(shared_by_processes(pooled, processes, 64), 64) for processes in (1, 2, 4, 16)
    ] == [10, 5, 2, 1]
    chosen = Settings(pool_size=40, org_concurrency=6)
    assert org_concurrency(shared_by_processes(chosen, 4, 64), 64) == 6


def test_a_request_is_counted_once_and_its_slot_given_back() -> None:
    admission = Admission(per_org=1, per_token=1)
    org, token = uuid.uuid4(), uuid.uuid4()
    scope: dict[str, object] = {}
    admission.enter(scope, org, token)
    admission.enter(scope, org, token)  # the same request authenticating again
    assert admission.in_progress(org) == 1
    with pytest.raises(ScimError) as refused:
        admission.enter({}, org, uuid.uuid4())
    assert refused.value.status == 429
    admission.leave(org, token)
    assert admission.in_progress(org) == 0
