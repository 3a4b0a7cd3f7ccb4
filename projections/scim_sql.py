"""SCIM filters and sort keys compiled to parameterized SQL over a projection table.

Values never enter the SQL text: each becomes a numbered, explicitly typed parameter. Attribute names come
from the schema, never from the request, so the SQL text is drawn from a fixed vocabulary. Attributes with
a column of their own (userName, active...) use it, so that `userName eq` is an index lookup; the rest are
read from the jsonb document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scim.errors import invalid_filter
from scim.filter_tree import And, AttrPath, Compare, Filter, Not, Or, Present, ValuePath
from scim.folding import fold
from scim.instants import parse_instant
from scim.resource_type import Resolved, ResourceType
from scim.schema import Attribute

_SQL_TYPES = {"boolean": "boolean", "dateTime": "timestamptz", "integer": "numeric", "decimal": "numeric"}


@dataclass(frozen=True, slots=True)
class Column:
    sql: str
    type: str = "string"  # the SCIM type of the values it holds
    case_exact: bool = False
    # No two rows of an organization hold equal values, compared as filters compare them (a unique index).
    unique: bool = False
    # What `pr` tests, where the column holds a value even when the attribute is unassigned.
    present: str | None = None


@dataclass(frozen=True, slots=True)
class Relation:
    """A multi-valued attribute kept as rows of another table rather than in the jsonb document, such as a
    group's members. `source` is the FROM clause for one outer row's values, `correlation` ties them to it."""

    source: str
    correlation: str
    columns: Mapping[str, Column]

    def exists(self, condition: str) -> str:
        return f"EXISTS (SELECT 1 FROM {self.source} WHERE {self.correlation} AND {condition})"

    def column(self, sub: Attribute) -> Column:
        column = self.columns.get(sub.name)
        if column is None:
            raise invalid_filter(f"Filtering on '{sub.name}' of this attribute is not supported.")
        return column


class Parameters:
    """Collects query parameters, numbering placeholders after those the caller already uses."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.values: list[Any] = []

    def add(self, value: Any, sql_type: str) -> str:
        self.values.append(value)
        return f"${self.offset + len(self.values)}::{sql_type}"


def _literal_key(name: str) -> str:
    # Keys come from the schema; quoting keeps URNs and "$ref" valid SQL string literals all the same.
    return "'" + name.replace("'", "''") + "'"


@dataclass(frozen=True)
class QueryCompiler:
    resource_type: ResourceType
    columns: Mapping[str, Column]
    document: str = "resource"
    relations: Mapping[str, Relation] = field(default_factory=dict)

    def where(self, scim_filter: Filter, parameters: Parameters) -> str:
        return self._compile(scim_filter, parameters)

    def matches_at_most_one(self, scim_filter: Filter) -> bool:
        """Whether `scim_filter` is an equality on a unique column, such as `userName eq "…"`."""
        if not isinstance(scim_filter, Compare) or scim_filter.op != "eq" or scim_filter.value is None:
            return False
        path = scim_filter.path
        resolved = self.resource_type.resolve(path.schema, path.name, path.sub)
        column = self.columns.get(resolved.dotted()) if resolved is not None else None
        return column is not None and column.unique

    def _compile(self, node: Filter, parameters: Parameters) -> str:
        if isinstance(node, And):
            return f"({self._compile(node.left, parameters)} AND {self._compile(node.right, parameters)})"
        if isinstance(node, Or):
            return f"({self._compile(node.left, parameters)} OR {self._compile(node.right, parameters)})"
        if isinstance(node, Not):
            return _negated(self._compile(node.inner, parameters))
        if isinstance(node, ValuePath):
            return self._value_path(node, parameters)
        resolved = self._resolve(node.path)
        column = self.columns.get(resolved.dotted())
        if column is not None:
            if isinstance(node, Present) and column.present is not None:
                return column.present
            return _leaf(node, column.sql, column.type, column.case_exact, parameters)
        attribute = resolved.attribute
        relation = self._relation(resolved)
        if relation is not None:
            if isinstance(node, Present) and resolved.sub_attribute is None:
                return relation.exists("TRUE")
            column = relation.column(resolved.sub_attribute or _value_of(attribute))
            return relation.exists(_leaf(node, column.sql, column.type, column.case_exact, parameters))
        if attribute.multi_valued:
            if isinstance(node, Present) and resolved.sub_attribute is None:
                return f"(jsonb_array_length({_array(self._container(resolved))}) > 0)"
            if attribute.type != "complex":
                # A multi-valued simple attribute (`skills eq "py"`) matches when one of its values does.
                value = _typed("value", attribute.type)
                inner = _leaf(node, value, attribute.type, attribute.case_exact, parameters)
                return (
                    f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({_array(self._container(resolved))}) "
                    f"AS e(value) WHERE {inner})"
                )
            sub = resolved.sub_attribute or attribute.sub("value")
            if sub is None:
                raise invalid_filter(f"Filter on a sub-attribute of '{attribute.name}'.")
            inner = _leaf(
                node, _typed(_text("element", sub.name), sub.type), sub.type, sub.case_exact, parameters
            )
            return self._exists(resolved, inner)
        if attribute.type == "complex" and resolved.sub_attribute is None:
            if isinstance(node, Present):
                return f"({self._container(resolved)} IS NOT NULL)"
            raise invalid_filter(
                f"'{attribute.name}' is complex: filter on one of its sub-attributes, such as "
                f"{attribute.name}.{attribute.sub_attributes[0].name}."
            )
        target = resolved.target
        return _leaf(
            node, _typed(self._scalar(resolved), target.type), target.type, target.case_exact, parameters
        )

    def _value_path(self, node: ValuePath, parameters: Parameters) -> str:
        resolved = self._resolve(node.path)
        attribute = resolved.attribute
        if not attribute.multi_valued or attribute.type != "complex":
            raise invalid_filter(f"'{attribute.name}' is not a multi-valued complex attribute.")
        relation = self._relation(resolved)
        if relation is not None:
            return relation.exists(self._element_filter(node.filter, attribute, relation.column, parameters))
        return self._exists(
            resolved, self._element_filter(node.filter, attribute, _element_column, parameters)
        )

    def _element_filter(
        self,
        node: Filter,
        attribute: Attribute,
        column_of: Callable[[Attribute], Column],
        parameters: Parameters,
    ) -> str:
        if isinstance(node, And | Or):
            left = self._element_filter(node.left, attribute, column_of, parameters)
            right = self._element_filter(node.right, attribute, column_of, parameters)
            return f"({left} {'AND' if isinstance(node, And) else 'OR'} {right})"
        if isinstance(node, Not):
            return _negated(self._element_filter(node.inner, attribute, column_of, parameters))
        if isinstance(node, ValuePath):
            raise invalid_filter("A value filter cannot be nested inside another value filter.")
        sub = attribute.sub(node.path.name) if node.path.schema is None and node.path.sub is None else None
        if sub is None:
            raise invalid_filter(f"'{attribute.name}' has no sub-attribute '{node.path}'.")
        column = column_of(sub)
        return _leaf(node, column.sql, column.type, column.case_exact, parameters)

    def _relation(self, resolved: Resolved) -> Relation | None:
        return self.relations.get(resolved.attribute.name) if resolved.extension is None else None

    def order_by(self, path: AttrPath) -> tuple[str, bool]:
        """The SQL sort expression for `sortBy`, and whether it holds text (which sorts ignoring case)."""
        resolved = self._resolve(path)
        column = self.columns.get(resolved.dotted())
        if column is not None:
            expression, scim_type, case_exact = column.sql, column.type, column.case_exact
        elif self._relation(resolved) is not None:
            raise invalid_filter(f"Cannot sort by '{resolved.attribute.name}'.")
        elif resolved.attribute.multi_valued and resolved.attribute.type != "complex":
            # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary value, else its first; simple
            # values have no `primary`, so the first.
            scim_type, case_exact = resolved.attribute.type, resolved.attribute.case_exact
            expression = (
                f"(SELECT {_typed('value', scim_type)} FROM jsonb_array_elements_text("
                f"{_array(self._container(resolved))}) WITH ORDINALITY AS e(value, n) ORDER BY n LIMIT 1)"
            )
        elif resolved.attribute.multi_valued:
            sub = resolved.sub_attribute or resolved.attribute.sub("value")
            if sub is None:
                raise invalid_filter(f"Cannot sort by '{resolved.attribute.name}'.")
            scim_type, case_exact = sub.type, sub.case_exact
            # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary value, else its first.
            expression = (
                f"(SELECT {_typed(_text('element', sub.name), scim_type)} FROM jsonb_array_elements("
                f"{_array(self._container(resolved))}) WITH ORDINALITY AS e(element, n) "
                f"ORDER BY (element->>'primary') = 'true' IS TRUE DESC, n LIMIT 1)"
            )
        elif resolved.attribute.type == "complex" and resolved.sub_attribute is None:
            raise invalid_filter(f"Cannot sort by the complex attribute '{resolved.attribute.name}'.")
        else:
            scim_type, case_exact = resolved.target.type, resolved.target.case_exact
            expression = _typed(self._scalar(resolved), scim_type)
        if scim_type in _SQL_TYPES:
            return f"({expression})::{_SQL_TYPES[scim_type]}", False
        return (expression if case_exact else f"scim_fold({expression})"), True

    def _resolve(self, path: AttrPath) -> Resolved:
        resolved = self.resource_type.resolve(path.schema, path.name, path.sub)
        if resolved is None:
            raise invalid_filter(f"'{path}' is not an attribute of {self.resource_type.name}.")
        if resolved.dotted() not in self.columns and resolved.attribute.name == "meta":
            raise invalid_filter(f"Filtering on '{path}' is not supported.")
        return resolved

    def _container(self, resolved: Resolved) -> str:
        base = self.document
        if resolved.extension is not None:
            base = f"{base}->{_literal_key(resolved.extension)}"
        return f"{base}->{_literal_key(resolved.attribute.name)}"

    def _scalar(self, resolved: Resolved) -> str:
        if resolved.sub_attribute is None:
            base = self.document
            if resolved.extension is not None:
                base = f"{base}->{_literal_key(resolved.extension)}"
            return _text(base, resolved.attribute.name)
        return _text(self._container(resolved), resolved.sub_attribute.name)

    def _exists(self, resolved: Resolved, condition: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements({_array(self._container(resolved))}) "
            f"AS e(element) WHERE jsonb_typeof(element) = 'object' AND {condition})"
        )


def _value_of(attribute: Attribute) -> Attribute:
    value = attribute.sub("value")
    if value is None:
        raise invalid_filter(f"Filter on a sub-attribute of '{attribute.name}'.")
    return value


def _element_column(sub: Attribute) -> Column:
    return Column(_typed(_text("element", sub.name), sub.type), sub.type, sub.case_exact)


def _text(base: str, key: str) -> str:
    return f"({base}->>{_literal_key(key)})"


def _array(container: str) -> str:
    """A jsonb container as an array to expand: empty when absent, or when a stored value is not an array
    (jsonb_array_elements would fail the whole query on it)."""
    return f"(CASE WHEN jsonb_typeof({container}) = 'array' THEN {container} ELSE '[]'::jsonb END)"


# The text of a JSON number as jsonb prints it (never with an exponent), and an instant as RFC 7643 §2.3.5's
# xsd:dateTime writes it, with each field in range.
_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"
_INSTANT = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _typed(text: str, scim_type: str) -> str:
    """A value read as text from the jsonb document, as the SQL type its SCIM type compares as, or NULL when
    the stored text is not one: a value stored under an earlier declaration, or sent before a type was
    enforced, must not make a filter or a sort fail. CASE is the one construct whose branches PostgreSQL
    evaluates in order, so the cast only ever sees text that passed the check before it."""
    if scim_type in ("integer", "decimal"):
        return f"(CASE WHEN {text} ~ '{_NUMBER}' THEN ({text})::numeric END)"
    if scim_type == "boolean":
        return f"(CASE WHEN {text} IN ('true', 'false') THEN ({text})::boolean END)"
    if scim_type == "dateTime":
        # The shape first; then the day within its month (February 30th has the shape), the year 0 which
        # PostgreSQL has no date for, and only then the cast.
        return (
            f"(CASE WHEN {text} !~* '{_INSTANT}' THEN NULL WHEN left({text}, 4) = '0000' THEN NULL "
            f"WHEN substr({text}, 9, 2)::int > extract(day from (left({text}, 7) || '-01')::date "
            f"+ interval '1 month - 1 day') THEN NULL ELSE ({text})::timestamptz END)"
        )
    return text


def _negated(condition: str) -> str:
    """`not (...)`. A comparison with an absent attribute is SQL NULL, which excludes a row just as false does
    everywhere but under NOT; so unknown becomes false here, at the one place it matters. Comparisons stay
    bare everywhere else, which is what lets PostgreSQL match them to indexes (userName eq)."""
    return f"(NOT coalesce({condition}, false))"


def _leaf(
    node: Compare | Present, expression: str, scim_type: str, case_exact: bool, parameters: Parameters
) -> str:
    """One comparison, as a bare predicate that an index can serve; NULL when the attribute is absent."""
    if isinstance(node, Present):
        if scim_type == "string" or scim_type == "reference":
            return f"coalesce({expression} <> '', false)"
        return f"({expression} IS NOT NULL)"
    op, value = node.op, node.value
    if value is None:
        if op == "eq":
            return f"({expression} IS NULL)"
        if op == "ne":
            return f"({expression} IS NOT NULL)"
        raise invalid_filter(f"'{op}' cannot compare with null.")
    if scim_type == "boolean":
        return _compare_boolean(node, expression, parameters)
    if scim_type in ("dateTime", "integer", "decimal"):
        return _compare_ordered(node, expression, scim_type, parameters)
    if not isinstance(value, str):
        raise invalid_filter(f"'{node.path}' holds text: compare it with a quoted string.")
    if not case_exact:
        # The column folded in SQL, the value here: one folding (scim/folding.py), and the unique indexes are
        # on scim_fold(column), so `userName eq` stays one index lookup.
        expression = f"scim_fold({expression})"
        value = fold(value)
    placeholder = parameters.add(value, "text")
    if op == "eq":
        condition = f"{expression} = {placeholder}"
    elif op == "ne":
        return f"({expression} IS DISTINCT FROM {placeholder})"
    elif op == "co":
        condition = f"strpos({expression}, {placeholder}) > 0"
    elif op == "sw":
        condition = f"starts_with({expression}, {placeholder})"
    elif op == "ew":
        condition = f"right({expression}, char_length({placeholder})) = {placeholder}"
    else:
        comparison = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        condition = f'{expression} COLLATE "C" {comparison} {placeholder}'
    return condition


def _compare_boolean(node: Compare, expression: str, parameters: Parameters) -> str:
    value = node.value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool) or node.op not in ("eq", "ne"):
        raise invalid_filter(f"'{node.path}' is a boolean: compare it with eq or ne and true or false.")
    placeholder = parameters.add(value, "boolean")
    if node.op == "eq":
        return f"(({expression})::boolean = {placeholder})"
    return f"(({expression})::boolean IS DISTINCT FROM {placeholder})"


def _compare_ordered(node: Compare, expression: str, scim_type: str, parameters: Parameters) -> str:
    if node.op in ("co", "sw", "ew"):
        raise invalid_filter(f"'{node.op}' does not apply to '{node.path}', which is a {scim_type}.")
    value: Any = node.value
    if scim_type == "dateTime":
        if not isinstance(value, str):
            raise invalid_filter(f"'{node.path}' is a dateTime: compare it with a quoted timestamp.")
        try:
            value = parse_instant(value)
        except ValueError as error:
            raise invalid_filter(str(error)) from error
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_filter(f"'{node.path}' is a number: compare it with a number.")
    sql_type = _SQL_TYPES[scim_type]
    placeholder = parameters.add(value, sql_type)
    typed = f"({expression})::{sql_type}"
    if node.op == "ne":
        return f"({typed} IS DISTINCT FROM {placeholder})"
    comparison = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[node.op]
    return f"({typed} {comparison} {placeholder})"
