import pytest

from scim.errors import ScimError
from scim.filter import parse_attr_path, parse_attribute_list, parse_filter, parse_patch_path
from scim.filter_tree import And, AttrPath, Compare, Filter, Not, Or, PatchPath, Present, ValuePath, restrict

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize("op", ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
def test_every_comparison_operator_parses(op: str) -> None:
    assert parse_filter(f'title {op} "x"') == Compare(AttrPath(None, "title"), op, "x")


def test_operators_keywords_and_literals_are_case_insensitive() -> None:
    assert parse_filter('userName EQ "a" AND active Eq TRUE') == And(
        Compare(AttrPath(None, "userName"), "eq", "a"), Compare(AttrPath(None, "active"), "eq", True)
    )
    assert parse_filter("title PR") == Present(AttrPath(None, "title"))
    assert parse_filter("x eq NULL") == Compare(AttrPath(None, "x"), "eq", None)


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    a, b, c = (Compare(AttrPath(None, name), "eq", 1) for name in "abc")
    assert parse_filter("a eq 1 or b eq 1 and c eq 1") == Or(a, And(b, c))
    assert parse_filter("(a eq 1 or b eq 1) and c eq 1") == And(Or(a, b), c)
    assert parse_filter("not (a eq 1) and b eq 1") == And(Not(a), b)


def test_value_paths_and_sub_attributes() -> None:
    parsed = parse_filter('emails[type eq "work" and value co "@example.com"] or name.givenName sw "J"')
    assert parsed == Or(
        ValuePath(
            AttrPath(None, "emails"),
            And(
                Compare(AttrPath(None, "type"), "eq", "work"),
                Compare(AttrPath(None, "value"), "co", "@example.com"),
            ),
        ),
        Compare(AttrPath(None, "name", "givenName"), "sw", "J"),
    )


def test_urn_qualified_attributes_keep_their_schema() -> None:
    parsed = parse_filter(f'{ENTERPRISE}:manager.value eq "m1"')
    assert parsed == Compare(AttrPath(ENTERPRISE, "manager", "value"), "eq", "m1")
    core = parse_filter('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob"')
    assert core == Compare(AttrPath("urn:ietf:params:scim:schemas:core:2.0:User", "userName"), "eq", "bob")


def test_numbers_strings_with_escapes_and_dates() -> None:
    assert parse_filter("n ge -1.5e2").value == -150.0  # type: ignore[union-attr]
    assert parse_filter('title eq "say \\"hi\\" \\u00e9"').value == 'say "hi" é'  # type: ignore[union-attr]
    assert parse_filter('meta.lastModified gt "2011-05-13T04:42:34Z"') == Compare(
        AttrPath(None, "meta", "lastModified"), "gt", "2011-05-13T04:42:34Z"
    )


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "a"',
        'not (userName eq "a") or (title pr and emails[type eq "work" or not (primary eq false)])',
        f'{ENTERPRISE}:department co "R&D" and x le 3',
        "a eq null and b ne true and c gt 1.5",
    ],
)
def test_printed_filters_parse_back_to_the_same_tree(text: str) -> None:
    tree = parse_filter(text)
    assert parse_filter(str(tree)) == tree


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "userName",
        "userName eq",
        'userName equals "a"',
        'userName eq "a" and',
        'userName eq "a" or or title pr',
        '(userName eq "a"',
        'userName eq "a")',
        'not userName eq "a"',
        'emails[type eq "work"',
        'emails[type[value eq "x"] eq "y"]',
        "userName eq unquoted",
        'userName eq "unterminated',
        '"a" eq userName',
        "a.b.c eq 1",
        'userName eq "a" ; DROP TABLE events',
        "userName eq 'single'",
        "title pr pr",
    ],
)
def test_malformed_filters_are_a_scim_invalid_filter_error(text: str) -> None:
    with pytest.raises(ScimError) as caught:
        parse_filter(text)
    assert caught.value.status == 400
    assert caught.value.scim_type == "invalidFilter"


def test_patch_paths() -> None:
    assert parse_patch_path("name.givenName") == PatchPath(AttrPath(None, "name", "givenName"))
    assert parse_patch_path('emails[type eq "work"].value') == PatchPath(
        AttrPath(None, "emails"), Compare(AttrPath(None, "type"), "eq", "work"), "value"
    )
    assert parse_patch_path('members[value eq "2819c223"]') == PatchPath(
        AttrPath(None, "members"), Compare(AttrPath(None, "value"), "eq", "2819c223")
    )
    assert parse_patch_path(f"{ENTERPRISE}:department") == PatchPath(AttrPath(ENTERPRISE, "department"))


@pytest.mark.parametrize(
    "text", ["", "emails[", 'emails[type eq "work"]value', "a b", "name.givenName[x eq 1]"]
)
def test_malformed_patch_paths_are_invalid_path(text: str) -> None:
    with pytest.raises(ScimError) as caught:
        parse_patch_path(text)
    assert caught.value.scim_type == "invalidPath"


def test_attribute_lists() -> None:
    assert parse_attribute_list("userName, name.givenName,") == [
        AttrPath(None, "userName"),
        AttrPath(None, "name", "givenName"),
    ]


def test_deeply_nested_or_overlong_filters_are_invalid_filter_not_a_crash() -> None:
    for text in ("(" * 2000 + "title pr" + ")" * 2000, "title pr and " * 400 + "title pr"):
        with pytest.raises(ScimError) as caught:
            parse_filter(text)
        assert caught.value.scim_type == "invalidFilter"


def test_restrict_decides_comparisons_on_attributes_a_type_lacks_as_on_unassigned_ones() -> None:
    def users_only(path: AttrPath) -> bool:
        return path.name.lower() in ("username", "displayname")

    def restricted(text: str) -> object:
        return restrict(parse_filter(text), users_only)

    assert restricted('members pr or userName eq "a"') == parse_filter('userName eq "a"')
    assert restricted('members pr and userName eq "a"') is False
    assert restricted("not (members pr)") is True
    assert restricted('members.value ne "x"') is True
    assert restricted("members eq null") is True
    assert restricted("members ne null") is False
    assert restricted('members[value eq "x"] or not (displayName co "a")') == parse_filter(
        'not (displayName co "a")'
    )
    assert restricted('userName eq "a" and displayName eq "b"') == parse_filter(
        'userName eq "a" and displayName eq "b"'
    )


def test_restrict_handles_filters_deeper_than_the_recursion_limit() -> None:
    chain: Filter = Compare(AttrPath(None, "members"), "eq", "x")
    for _ in range(5000):
        chain = Or(chain, Compare(AttrPath(None, "members"), "eq", "x"))
    assert restrict(chain, lambda path: False) is False


def test_an_attribute_path_longer_than_any_schema_has_is_refused_without_echoing_it_whole() -> None:
    with pytest.raises(ScimError) as refused:
        parse_attr_path("a" * 100_000)
    assert len(refused.value.detail) < 300
    assert "100,000 characters" in refused.value.detail
