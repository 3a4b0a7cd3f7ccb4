"""The RFC 7644 §3.4.2.2 filter grammar, and the PATCH path grammar of §3.5.2 that reuses it.

    FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
    valuePath = attrPath "[" valFilter "]"
    attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
    PATH      = attrPath / valuePath [subAttr]

Precedence is "not", then "and", then "or"; keywords and operators are case-insensitive. The result
is a small immutable tree that `str()` turns back into a filter which parses to the same tree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

import msgspec

from scim.errors import ScimError, invalid_filter, invalid_path
from scim.filter_tree import And, AttrPath, Compare, Filter, Not, Or, PatchPath, Present, Value, ValuePath

COMPARE_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDERING_OPERATORS = frozenset({"gt", "ge", "lt", "le"})


_ATTRIBUTE_NAME = re.compile(r"^(?:[A-Za-z][\w-]*|\$ref)$")
# A JSON string: quotes around characters and escapes. Written as "runs between escapes" rather than as an
# alternation per character, which Python's re matched 2.5 times slower.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<punct>[()\[\]])
  | (?P<string>"""
    + _STRING
    + r""")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.:]))
  | (?P<subattr>\.[A-Za-z$][\w$-]*)
  | (?P<word>[A-Za-z$][\w$:.\-]*)
  | (?P<unexpected>[\s\S])
    """,
    re.VERBOSE,
)


class _Token(NamedTuple):
    # A NamedTuple: a frozen dataclass's __init__ made tokenizing a third of parsing a filter.
    kind: str
    text: str
    position: int


# An attribute path is a schema's URN, a name and a sub-attribute's: `sortBy` and each name of `attributes`
# longer than this name nothing, and are refused without being parsed, or echoed whole.
MAX_ATTRIBUTE_PATH_LENGTH = 1024
_SHOWN_PATH_LENGTH = 100


# The same few paths (userName, emails.value...) arrive in request after request; bounded, as clients may
# spell them in any case.
@functools.lru_cache(maxsize=1024)
def parse_attr_path(text: str, error: Callable[[str], ScimError] = invalid_filter) -> AttrPath:
    if len(text) > MAX_ATTRIBUTE_PATH_LENGTH:
        raise error(
            f"'{text[:_SHOWN_PATH_LENGTH]}…' is {len(text):,} characters long; an attribute path is at most "
            f"{MAX_ATTRIBUTE_PATH_LENGTH:,}."
        )
    schema: str | None = None
    rest = text
    if text[:4].lower() == "urn:":
        schema, _, rest = text.rpartition(":")
        if not schema or not rest:
            raise error(f"'{text}' is not a valid attribute path.")
    parts = rest.split(".")
    if len(parts) > 2 or not all(_ATTRIBUTE_NAME.match(part) for part in parts):
        raise error(f"'{text}' is not a valid attribute path.")
    return AttrPath(schema, parts[0], parts[1] if len(parts) == 2 else None)


class _Parser:
    def __init__(self, text: str, error: Callable[[str], ScimError]) -> None:
        self.text = text
        self.error = error
        self.tokens = self._tokenize(text)
        self.index = 0

    def _tokenize(self, text: str) -> list[_Token]:
        tokens: list[_Token] = []
        # Every character is matched by some group, the last one catching the unexpected, so the matches
        # cover the text end to end.
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            assert kind is not None
            if kind == "unexpected":
                raise self.error(f"Unexpected character {match.group()!r} at position {match.start() + 1}.")
            if kind != "space":
                tokens.append(_Token(kind, match.group(), match.start()))
        return tokens

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def peek_keyword(self) -> str | None:
        token = self.peek()
        return token.text.lower() if token is not None and token.kind == "word" else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.error("The filter ends too early.")
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise self.error(f"Expected '{text}' at position {token.position + 1}, found '{token.text}'.")

    def finish(self) -> None:
        token = self.peek()
        if token is not None:
            raise self.error(f"Unexpected '{token.text}' at position {token.position + 1}.")

    def parse_or(self, nested: bool) -> Filter:
        result = self.parse_and(nested)
        while self.peek_keyword() == "or":
            self.take()
            result = Or(result, self.parse_and(nested))
        return result

    def parse_and(self, nested: bool) -> Filter:
        result = self.parse_unary(nested)
        while self.peek_keyword() == "and":
            self.take()
            result = And(result, self.parse_unary(nested))
        return result

    def parse_unary(self, nested: bool) -> Filter:
        token = self.peek()
        if token is None:
            raise self.error("The filter ends where an expression was expected.")
        if token.kind == "word" and token.text.lower() == "not":
            self.take()
            self.expect("(")
            inner = self.parse_or(nested)
            self.expect(")")
            return Not(inner)
        if token.text == "(":
            self.take()
            inner = self.parse_or(nested)
            self.expect(")")
            return inner
        return self.parse_attribute_expression(nested)

    def parse_attribute_expression(self, nested: bool) -> Filter:
        token = self.take()
        if token.kind != "word":
            raise self.error(
                f"Expected an attribute name at position {token.position + 1}, found '{token.text}'."
            )
        path = parse_attr_path(token.text, self.error)
        following = self.peek()
        if following is not None and following.text == "[":
            if nested:
                raise self.error("A value filter cannot be nested inside another value filter.")
            if path.sub is not None:
                raise self.error(
                    f"'{path}' cannot take a value filter: name the multi-valued attribute itself."
                )
            self.take()
            inner = self.parse_or(nested=True)
            self.expect("]")
            return ValuePath(path, inner)
        operator_token = self.take()
        operator = operator_token.text.lower()
        if operator_token.kind != "word" or (operator != "pr" and operator not in COMPARE_OPERATORS):
            raise self.error(
                f"'{operator_token.text}' at position {operator_token.position + 1} is not a filter operator "
                "(eq, ne, co, sw, ew, gt, ge, lt, le, pr)."
            )
        if operator == "pr":
            return Present(path)
        return Compare(path, operator, self.parse_value())

    def parse_value(self) -> Value:
        token = self.take()
        if token.kind == "string":
            return _string_value(token.text, token.position, self.error)
        if token.kind == "number":
            try:
                number: int | float = msgspec.json.decode(token.text)
            except msgspec.DecodeError as decode_error:
                raise self.error(
                    f"The number at position {token.position + 1} is out of range."
                ) from decode_error
            return number
        keyword = token.text.lower() if token.kind == "word" else None
        if keyword in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[keyword]
        raise self.error(
            f"Expected a value (a quoted string, number, true, false or null) at position {token.position + 1}, "
            f"found '{token.text}'."
        )


# Far longer than any filter a client sends, and short enough that the trees it parses to are shallow enough
# for the recursive parser, the SQL compiler and PostgreSQL's own expression depth.
MAX_FILTER_LENGTH = 4096


def _string_value(quoted: str, position: int, error: Callable[[str], ScimError]) -> str:
    try:
        text: str = msgspec.json.decode(quoted, type=str)
    except (msgspec.DecodeError, UnicodeEncodeError) as decode_error:  # a lone surrogate is not text
        raise error(f"The string at position {position + 1} is malformed.") from decode_error
    if "\x00" in text:
        raise error(f"The string at position {position + 1} contains a NUL character.")
    return text


# `attrPath op "string"` and nothing else: what identity providers send nearly every time (userName eq "…").
# Its parts are spelled as the tokenizer spells a word and a string, so it means what the general parser
# would make of it; that parser takes everything else, and gives every error.
_SIMPLE_COMPARISON = re.compile(r"\s*([A-Za-z][\w:.\-]*)\s+([A-Za-z]{2})\s+(" + _STRING + r")\s*")


def _simple_comparison(text: str) -> Compare | None:
    match = _SIMPLE_COMPARISON.fullmatch(text)
    if match is None:
        return None
    name, operator = match[1], match[2].lower()
    if operator not in COMPARE_OPERATORS or name.lower() == "not":  # "not" starts a negation
        return None
    try:
        return Compare(
            parse_attr_path(name), operator, _string_value(match[3], match.start(3), invalid_filter)
        )
    except ScimError:
        return None


def parse_filter(text: str) -> Filter:
    if len(text) > MAX_FILTER_LENGTH:
        raise invalid_filter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    simple = _simple_comparison(text)
    if simple is not None:
        return simple
    return _parse_general(text)


def _parse_general(text: str) -> Filter:
    parser = _Parser(text, invalid_filter)
    if not parser.tokens:
        raise invalid_filter("The filter is empty.")
    try:
        result = parser.parse_or(nested=False)
    except RecursionError as error:
        raise invalid_filter("The filter is nested too deeply.") from error
    parser.finish()
    return result


def parse_patch_path(text: str) -> PatchPath:
    # The guards of parse_filter: a path holds a filter, and the same length bounds its depth.
    if len(text) > MAX_FILTER_LENGTH:
        raise invalid_path(f"The path is longer than {MAX_FILTER_LENGTH} characters.")
    try:
        return _parse_patch_path(text)
    except RecursionError as error:
        raise invalid_path("The path's filter is nested too deeply.") from error


def _parse_patch_path(text: str) -> PatchPath:
    parser = _Parser(text, invalid_path)
    first = parser.take() if parser.tokens else None
    if first is None or first.kind != "word":
        raise invalid_path(f"'{text}' is not a valid path.")
    attribute = parse_attr_path(first.text, invalid_path)
    value_filter: Filter | None = None
    sub: str | None = None
    following = parser.peek()
    if following is not None and following.text == "[":
        if attribute.sub is not None:
            raise invalid_path(
                f"'{text}': a value filter follows a multi-valued attribute, not a sub-attribute."
            )
        parser.take()
        value_filter = parser.parse_or(nested=True)
        parser.expect("]")
        tail = parser.peek()
        if tail is not None and tail.kind == "subattr":
            parser.take()
            sub = tail.text[1:]
            if not _ATTRIBUTE_NAME.match(sub):
                raise invalid_path(f"'{text}' is not a valid path.")
    parser.finish()
    return PatchPath(attribute, value_filter, sub)


def parse_attribute_list(text: str) -> list[AttrPath]:
    """The comma-separated `attributes` / `excludedAttributes` query parameters (RFC 7644 §3.9)."""
    return [parse_attr_path(item.strip(), invalid_path) for item in text.split(",") if item.strip()]
