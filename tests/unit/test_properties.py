"""Properties, checked by Hypothesis over generated inputs: the filter parser, the PATCH engine, the event codec.

`make test` runs each with Hypothesis's default number of examples; `make fuzz` with SCIMLEDGER_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import string
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError, InactiveMember
from domain.users import User
from eventstore.records import decode_event, encode_event
from projections.scim_sql import Parameters
from projections.scim_users import USER_QUERIES
from scim.core_schemas import USER
from scim.errors import ScimError
from scim.filter import COMPARE_OPERATORS, MAX_FILTER_LENGTH, _parse_general, parse_filter
from scim.filter_tree import And, AttrPath, Compare, Filter, Not, Or, Present, ValuePath
from scim.group_patch import plan_patch
from scim.patch import apply_patch
from scim.patch_request import PatchRequest, parse_operations
from scim.schema import IDENTIFIERS, MAX_IDENTIFIER_LENGTH

EXAMPLES = int(os.environ.get("SCIMLEDGER_FUZZ_EXAMPLES", "100"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

# ---------------------------------------------------------------------------------------------------------
# The filter parser: whatever parses prints back to a filter that parses to the same tree; anything else is a
# SCIM 400 (invalidFilter), never another exception.

names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,11}\Z").filter(
    lambda name: name.lower() not in {"and", "or", "not", "pr", "true", "false", "null", *COMPARE_OPERATORS}
)
schemas = st.sampled_from([None, "urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
paths = st.builds(AttrPath, schemas, names, st.none() | names)
plain_paths = st.builds(AttrPath, st.none(), names, st.none())
values = (
    # NUL is refused everywhere (PostgreSQL cannot store it), and a lone surrogate is not text at all.
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.booleans()
    | st.none()
)


def filters(path_strategy: st.SearchStrategy[AttrPath], nested: bool) -> st.SearchStrategy[Filter]:
    leaves = st.builds(
        Compare, path_strategy, st.sampled_from(sorted(COMPARE_OPERATORS)), values
    ) | st.builds(Present, path_strategy)
    if nested:
        # A value path's inner filter names sub-attributes, and holds no value path of its own.
        leaves = leaves | st.builds(ValuePath, plain_paths, filters(plain_paths, nested=False))
    return st.recursive(
        leaves,
        lambda inner: st.builds(And, inner, inner) | st.builds(Or, inner, inner) | st.builds(Not, inner),
        max_leaves=8,
    )


@PROPERTY
@given(filters(paths, nested=True))
def test_every_filter_prints_to_text_that_parses_back_to_it(tree: Filter) -> None:
    assert parse_filter(str(tree)) == tree


TOKENS = [
    "userName", "emails", "emails.value", "name.givenName", ENTERPRISE + ":manager", "eq", "ne", "co", "sw",
    "pr", "gt", "and", "or", "not", "(", ")", "[", "]", '"x"', '"', "\\", "true", "null", "1", "-2.5e3", " ",
    ".", ":", "type", "value",
]  # fmt: skip


@PROPERTY
@given(st.text(st.characters()) | st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join))
@example('userName eq "\ud800"')  # found by make fuzz: a lone surrogate was a UnicodeEncodeError
def test_any_text_either_parses_and_round_trips_or_is_a_scim_400(text: str) -> None:
    try:
        tree = parse_filter(text)
    except ScimError as error:
        refused = error
    else:
        assert parse_filter(str(tree)) == tree
        return
    assert (refused.status, refused.scim_type) == (400, "invalidFilter")


# `attrPath op "string"` takes a shortcut past the tokenizer: it must mean what the general parser makes of it,
# and fail as it fails. Names, operators and strings are drawn near the edges of what the shortcut accepts.
simple_names = st.sampled_from(
    ["userName", "NOT", "not", "and", "Or", "emails.value", "name.", "a.b.c", ENTERPRISE + ":manager", "x-1"]
) | st.from_regex(r"\A[A-Za-z][\w:.\-]{0,12}\Z")
simple_operators = st.sampled_from([*COMPARE_OPERATORS, "EQ", "Co", "pr", "xx", "an"])
simple_strings = st.text(st.characters(exclude_categories=["Cs"])).map(
    lambda text: msgspec.json.encode(text).decode()
) | st.sampled_from(['"\\u0000"', '"\\ud800"', '"\\x"', '"a\\"b"', '""'])


def _outcome(parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except ScimError as error:
        return (error.status, error.scim_type, error.detail)


@PROPERTY
@given(
    st.tuples(
        st.sampled_from(["", " "]),
        simple_names,
        simple_operators,
        simple_strings,
        st.sampled_from(["", "  "]),
    )
)
def test_a_simple_comparison_parses_as_the_general_parser_parses_it(parts: tuple[str, ...]) -> None:
    leading, name, operator, quoted, trailing = parts
    text = f"{leading}{name} {operator} {quoted}{trailing}"
    assert _outcome(parse_filter, text) == _outcome(_parse_general, text)


# ---------------------------------------------------------------------------------------------------------
# The PATCH engine, against RFC 7644 §3.5.2.

SIMPLE = ["displayName", "nickName", "title", "locale", "timezone", "profileUrl", "preferredLanguage"]
texts = st.text(alphabet=string.ascii_letters + string.digits + " .-@", min_size=1, max_size=20)
emails = st.lists(
    st.fixed_dictionaries(
        {"value": texts.map(lambda text: text.strip() + "@x.example" if text.strip() else "a@x")}
    ),
    max_size=3,
)
users = st.fixed_dictionaries(
    {"userName": texts, "active": st.booleans()},
    optional={
        **dict.fromkeys(SIMPLE[:4], texts),
        "name": st.fixed_dictionaries({}, optional={"givenName": texts, "familyName": texts}),
        "emails": emails,
    },
)


def patched(state: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    request = msgspec.convert({"schemas": [PATCH_OP], "Operations": list(operations)}, PatchRequest)
    return apply_patch(USER, state, parse_operations(request), read_only={})


def as_validated(state: dict[str, Any]) -> dict[str, Any]:
    return USER.validate(state)


@PROPERTY
@given(users, st.sampled_from(SIMPLE), texts, st.sampled_from(["replace", "add", "Replace", "ADD"]))
def test_add_or_replace_of_a_single_valued_attribute_sets_it_and_nothing_else(
    state: dict[str, Any], attribute: str, value: str, op: str
) -> None:
    result = patched(state, {"op": op, "path": attribute, "value": value})
    assert result[attribute] == value
    others = {key: item for key, item in as_validated(state).items() if key != attribute}
    assert {key: item for key, item in result.items() if key != attribute} == others


@PROPERTY
@given(users, st.sampled_from(SIMPLE), texts)
def test_a_pathless_replace_equals_the_replace_by_path(
    state: dict[str, Any], attribute: str, value: str
) -> None:
    assert patched(state, {"op": "replace", "value": {attribute: value}}) == patched(
        state, {"op": "replace", "path": attribute, "value": value}
    )


@PROPERTY
@given(users, st.sampled_from(SIMPLE), texts)
def test_replace_is_idempotent_and_remove_unassigns(
    state: dict[str, Any], attribute: str, value: str
) -> None:
    once = patched(state, {"op": "replace", "path": attribute, "value": value})
    assert patched(once, {"op": "replace", "path": attribute, "value": value}) == once
    assert attribute not in patched(once, {"op": "remove", "path": attribute})


@PROPERTY
@given(users, emails.filter(bool))
def test_add_to_a_multi_valued_attribute_keeps_the_old_values_and_adds_the_new(
    state: dict[str, Any], added: list[dict[str, str]]
) -> None:
    result = patched(state, {"op": "add", "path": "emails", "value": added})
    values = [email["value"] for email in result.get("emails", [])]
    before = [email["value"] for email in as_validated(state).get("emails", [])]
    assert set(values) == set(before) | {email["value"] for email in added}


@PROPERTY
@given(users, st.sampled_from(SIMPLE), texts)
def test_a_failing_operation_applies_none_of_the_request(
    state: dict[str, Any], attribute: str, value: str
) -> None:
    untouched = copy.deepcopy(state)
    with pytest.raises(ScimError) as caught:
        # Remove without a path is an error (noTarget); the replace before it must not survive it.
        patched(state, {"op": "replace", "path": attribute, "value": value}, {"op": "remove"})
    assert caught.value.status == 400
    assert state == untouched


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "Replace", "move", ""])},
    optional={
        "path": st.sampled_from(
            ["emails", 'emails[type eq "work"].value', "name.givenName", "active", "userName", "groups", "id",
             ENTERPRISE + ":manager.value", "emails[", "", "meta.created"]
        ) | st.text(max_size=12),
        "value": json_values,
    },
)  # fmt: skip


@PROPERTY
@given(users, st.lists(operations, min_size=1, max_size=4))
def test_any_patch_request_either_applies_or_is_a_scim_400(
    state: dict[str, Any], requested: list[dict[str, Any]]
) -> None:
    try:
        result = patched(state, *requested)
    except ScimError as error:
        refused = error
    else:
        assert result == as_validated(result), "what a PATCH produces is itself a valid User"
        return
    assert refused.status == 400


# ---------------------------------------------------------------------------------------------------------
# The event codec: every event a User records survives encoding, storage as JSON and decoding unchanged.

attribute_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
profiles = st.dictionaries(st.text(min_size=1, max_size=12), attribute_values, max_size=5).map(
    lambda attributes: {**attributes, "userName": "u"}
)
commands = st.lists(
    st.one_of(
        st.tuples(st.just("replace"), profiles, st.none() | st.booleans()),
        st.tuples(st.just("active"), st.booleans()),
        st.tuples(st.just("join"), st.sampled_from(["g1", "g2"])),
        st.tuples(st.just("leave"), st.sampled_from(["g1", "g2"])),
        st.tuples(st.just("remove"), st.sampled_from(["admin", "okta_deactivation"])),
    ),
    max_size=8,
)


@PROPERTY
@given(profiles, commands)
def test_every_event_survives_encoding_and_replays_to_the_same_user(
    profile: dict[str, Any], issued: list[tuple[Any, ...]]
) -> None:
    """Commands are issued as the service issues them, so that every history is one the log can hold: a
    command the domain refuses records nothing (a push of a user who may not join a group, an admin's second
    removal), and the identity provider's removal is the reactor's, which removes only inactive users."""
    user = User(org_id="org", attributes=profile, active=True)
    for command, *arguments in issued:
        if command == "replace":
            user.replace(arguments[0], arguments[1])
        elif command == "active":
            user.set_active(arguments[0])
        elif command == "join":
            with contextlib.suppress(InactiveMember):
                user.join_group(arguments[0], "okta")
        elif command == "leave":
            user.leave_group(arguments[0], "okta")
        elif command == "remove" and arguments[0] == "admin":
            with contextlib.suppress(DomainError):
                user.remove_from_organization(arguments[0])
        elif command == "remove" and not user.active:
            user.remove_from_organization(arguments[0])
    replayed = None
    for event in user.collect_events():
        encoded = encode_event(event)
        stored = msgspec.json.decode(encoded.payload)  # as jsonb gives it back
        decoded = decode_event(
            encoded.type, encoded.schema_version, stored, user.id, encoded.version, encoded.occurred_at
        )
        assert type(decoded) is type(event)
        assert vars(decoded) == vars(event)
        replayed = decoded.mutate(replayed)
    assert isinstance(replayed, User)
    assert (
        replayed.attributes,
        replayed.active,
        replayed.groups,
        replayed.member,
        replayed.departure,
        replayed.version,
    ) == (user.attributes, user.active, user.groups, user.member, user.departure, user.version)


# ---------------------------------------------------------------------------------------------------------
# Hostile input, by class rather than by instance: filters and PATCH paths nested or chained as deep as the
# length limit allows (and beyond), identifiers of any length, and dateTimes at and past the calendar's ends.
# None may raise anything but a SCIM 400, even from as deep in the stack as a request is served.

# Python's default recursion limit, which the service runs with (Hypothesis raises it while a test runs), and
# how deep in the stack a handler runs under uvicorn and Starlette, with room to spare.
RECURSION_LIMIT = 1000
SERVING_DEPTH = 150


def _stack_depth() -> int:
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def at_serving_depth(function: Any, padding: int | None = None) -> Any:
    if padding is None:
        padding = max(0, SERVING_DEPTH - _stack_depth())
    return function() if padding <= 0 else at_serving_depth(function, padding - 1)


def refusal(function: Any) -> ScimError | None:
    """The SCIM error `function` raises as deep in the stack as a request is served, under the service's
    recursion limit; None if it returns. Any other exception propagates."""
    raised_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        at_serving_depth(function)
    except ScimError as error:
        return error
    finally:
        sys.setrecursionlimit(raised_limit)
    return None


# The shortest terms give the longest chains within the length limit: "a pr" names no sub-attribute, which
# only matching finds out, after the path was parsed, printed and compiled.
LEAVES = ['type eq "work"', "type pr", "value pr", 'value eq "a@x.example"', "primary eq true", "a pr"]
nested = st.builds(
    lambda opener, depth, leaf: opener * depth + leaf + ")" * depth,
    st.sampled_from(["(", "not (", "NOT("]),
    st.integers(0, 1500),
    st.sampled_from(LEAVES),
)
chained = st.builds(
    lambda words, leaf: leaf + "".join(f" {word} {leaf}" for word in words),
    st.lists(st.sampled_from(["or", "and", "OR"]), max_size=900),
    st.sampled_from(LEAVES),
)
deep_filters = nested | chained | st.builds(lambda a, b: f"{a} or ({b})", chained, nested)
# The longest chain of the shortest terms that the length limit admits, inside `emails[...].display`.
LONGEST_CHAIN = "a pr" + " or a pr" * ((MAX_FILTER_LENGTH - 4 - 16) // 8)
DEEPEST_NOT = (
    "not (" * ((MAX_FILTER_LENGTH - 7 - 16) // 6) + "type pr" + ")" * ((MAX_FILTER_LENGTH - 7 - 16) // 6)
)


@PROPERTY
@given(deep_filters, st.booleans())
@example(LONGEST_CHAIN, True)
@example(LONGEST_CHAIN.replace(" or ", " and "), False)
def test_a_filter_of_any_depth_or_length_parses_prints_and_compiles_or_is_an_invalid_filter(
    text: str, in_value_path: bool
) -> None:
    text = f"emails[{text}]" if in_value_path else text.replace("type", "userName")

    def parse_print_compile() -> None:
        tree = parse_filter(text)
        str(tree)
        USER_QUERIES.where(tree, Parameters(offset=1))

    refused = refusal(parse_print_compile)
    assert refused is None or (refused.status, refused.scim_type) == (400, "invalidFilter")


@PROPERTY
@given(deep_filters, st.sampled_from(["path", "pathless"]))
@example(LONGEST_CHAIN, "path")
@example(LONGEST_CHAIN.replace(" or ", " and "), "pathless")
@example(DEEPEST_NOT, "path")
def test_a_patch_path_of_any_depth_or_length_applies_or_is_a_400(text: str, where: str) -> None:
    path = f"emails[{text}].display"
    operation = (
        {"op": "replace", "path": path, "value": "x"}
        if where == "path"
        else {"op": "replace", "value": {path: "x"}}
    )
    state = {"userName": "u", "emails": [{"value": "a@x.example", "type": "work", "primary": True}]}
    refused = refusal(lambda: patched(state, operation))
    assert refused is None or refused.status == 400


@PROPERTY
@given(deep_filters)
@example('value eq "a"' + ' or value eq "a"' * 250)
@example(LONGEST_CHAIN)
def test_a_members_filter_of_any_depth_or_length_plans_or_is_a_400(text: str) -> None:
    request = msgspec.convert(
        {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f"members[{text}]"}]}, PatchRequest
    )
    refused = refusal(lambda: plan_patch(parse_operations(request)))
    assert refused is None or refused.status == 400


# Up to 4 bytes a character in UTF-8, where an index entry's size is what the limit protects.
identifier_text = st.text(
    st.sampled_from(["a", "é", "€", "\U0001f600", "İ", "ß"]) | st.characters(exclude_categories=["Cs"]),
    min_size=1,
    max_size=3 * MAX_IDENTIFIER_LENGTH,
).filter(lambda text: "\x00" not in text)


@PROPERTY
@given(st.sampled_from(IDENTIFIERS), identifier_text, st.sampled_from(["post", "patch"]))
def test_an_identifier_of_any_length_is_kept_or_refused_naming_it(
    attribute: str, value: str, how: str
) -> None:
    written: dict[str, Any] = {}

    def write() -> None:
        if how == "post":
            written.update(USER.validate({"userName": "u", attribute: value}))
        else:
            written.update(patched({"userName": "u"}, {"op": "replace", "path": attribute, "value": value}))

    refused = refusal(write)
    if len(value) > MAX_IDENTIFIER_LENGTH:
        assert refused is not None
        assert (refused.status, refused.scim_type) == (400, "invalidValue")
        assert f"'{attribute}'" in refused.detail
    else:
        assert refused is None
        assert written[attribute] == value


offsets = st.integers(-14 * 60, 14 * 60).map(
    lambda minutes: (
        "Z"
        if minutes == 0
        else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
    )
)
edge_datetimes = (
    st.sampled_from(
        [
            datetime.datetime.min,
            datetime.datetime.max,
            datetime.datetime(1, 1, 1, 23, 59),
            datetime.datetime(9999, 12, 31),
        ]
    )
    | st.datetimes()
)
date_time_texts = st.builds(
    lambda moment, offset: moment.isoformat() + offset, edge_datetimes, st.just("") | offsets
) | st.text(max_size=30)


@PROPERTY
@given(
    date_time_texts,
    st.sampled_from(["meta.lastModified", "meta.created"]),
    st.sampled_from(["gt", "le", "eq"]),
)
@example("0001-01-01T00:00:00+14:00", "meta.lastModified", "gt")
@example("9999-12-31T23:59:59.999999-00:01", "meta.created", "le")
def test_a_date_time_in_a_filter_compiles_to_a_utc_instant_or_is_an_invalid_filter(
    text: str, attribute: str, operator: str
) -> None:
    parameters = Parameters(offset=1)
    quoted = msgspec.json.encode(text).decode()
    refused = refusal(
        lambda: USER_QUERIES.where(parse_filter(f"{attribute} {operator} {quoted}"), parameters)
    )
    if refused is not None:
        assert (refused.status, refused.scim_type) == (400, "invalidFilter")
        return
    [instant] = parameters.values
    # What asyncpg can send as it is: a real instant, already in UTC, so no offset can carry it out of range.
    assert isinstance(instant, datetime.datetime)
    assert instant.utcoffset() == datetime.timedelta(0)
