import pytest

from scim.errors import ScimError
from scim.filter import parse_filter
from scim.filter_cost import FilterCost, check_cost, cost


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "a"', FilterCost(1, 0)),
        ('userName co "a"', FilterCost(1, 1)),
        ('title pr and not (userName ew "x" or userName sw "y")', FilterCost(3, 1)),
        ('emails[type eq "work" and value co "@x"] or emails.value ew "z"', FilterCost(3, 2)),
        ('members[value eq "1"] and (displayName eq "a" or displayName eq "b")', FilterCost(3, 0)),
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


def test_the_deepest_filter_the_parser_admits_is_costed_without_recursion() -> None:
    deep = parse_filter("not (" * 300 + 'userName co "a"' + ")" * 300)
    assert cost(deep) == FilterCost(1, 1)
