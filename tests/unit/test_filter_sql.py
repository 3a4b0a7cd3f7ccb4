"""The SQL a filter compiles to: values only ever travel as parameters."""

import pytest

from projections.scim_sql import Parameters
from projections.scim_users import USER_QUERIES
from scim.errors import ScimError
from scim.filter import parse_filter


def compile_filter(text: str) -> tuple[str, list[object]]:
    parameters = Parameters(offset=1)
    return USER_QUERIES.where(parse_filter(text), parameters), parameters.values


def test_hostile_values_never_reach_the_sql_text() -> None:
    hostile = "x'); DROP TABLE events; --"
    sql, values = compile_filter(
        f'userName eq "{hostile}" or emails[value co "{hostile}"] or title sw "{hostile}"'
    )
    assert "DROP" not in sql
    assert values == [hostile.lower()] * 3
    assert "$2::text" in sql
    assert "$4::text" in sql


def test_user_name_equality_uses_the_indexed_expression() -> None:
    sql, values = compile_filter('USERNAME eq "Bob@Example.com"')
    assert sql == "scim_fold(user_name) = $2::text"
    assert values == ["bob@example.com"]


def test_case_exact_attributes_compare_exactly() -> None:
    sql, values = compile_filter('externalId eq "AbC"')
    assert sql == "external_id = $2::text"
    assert values == ["AbC"]


@pytest.mark.parametrize(
    "text",
    [
        'nonsense eq "x"',
        'name eq "x"',
        'active co "t"',
        "active gt true",
        'meta.created gt "not a date"',
        "userName eq 5",
        'meta.location eq "x"',
        'emails[nonsense eq "x"]',
    ],
)
def test_filters_the_schema_cannot_answer_are_invalid_filter(text: str) -> None:
    with pytest.raises(ScimError) as caught:
        compile_filter(text)
    assert caught.value.scim_type == "invalidFilter"
