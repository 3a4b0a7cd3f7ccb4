"""What the plan past one PostgreSQL (docs/scaling.md) relies on, in a form tests can check.

Two rules, each with the exceptions the plan names:
- every table's primary key and every unique index lead with org_id (KEY_EXCEPTIONS), so that each table can
  be distributed by organization on Citus, whose unique constraints must contain the distribution column;
- every SQL statement of our packages that touches a table with an org_id column is bound to the
  organizations it was given (QUERY_ALLOW_LIST), so that each one can be routed to the node holding them.

The statement check is static, over the SQL text of our modules, at the level of text rather than a parser:
it finds each table a statement names and asks whether that table's org_id is tied, by `=`, `<=`, `= ANY`,
`IS NOT DISTINCT FROM`, a row comparison or a join, to a parameter (or to a column of an unnest of
parameters). What it cannot resolve (a table named by a Python expression) counts as an organization's table,
so that it errs towards flagging.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "domain", "eventstore", "projections", "reactors", "scim")
PLAN = REPO / "docs" / "scaling.md"

# (table, index) whose key does not lead with org_id, with the reason docs/scaling.md gives. "primary key"
# stands for a missing primary key.
KEY_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("orgs", "orgs_name_key"): "reference table: a name is unique among all organizations",
    ("api_tokens", "primary key"): "reference table: a platform token has no organization",
    ("api_tokens", "api_tokens_token_id_key"): "reference table: a token is found by its id alone",
    ("api_tokens", "api_tokens_secret_hash_key"): "reference table: a request's token is found by its digest",
    ("events", "events_log_order"): "the single-node log order, replaced by (org_id, tx, position) on Citus",
    ("webhook_endpoints", "webhook_endpoints_endpoint_id_key"): "dropped before distribution (uuid4 ids)",
    ("consumer_positions", "consumer_positions_pkey"): "the runner's own state, on the coordinator",
    ("parked_events", "parked_events_pkey"): "the runner's own state, on the coordinator",
    ("idempotency_keys", "idempotency_keys_pkey"): "keyed by token: distributed by token_id",
    ("rate_limit_buckets", "rate_limit_buckets_pkey"): "keyed by token: distributed by its id",
    ("schema_migrations", "schema_migrations_pkey"): "the migrator's own state, on the coordinator",
}


@dataclass(frozen=True)
class Allowed:
    """Statements of `module` matching `pattern` that may read or write across organizations."""

    module: str
    pattern: str
    name: str  # as docs/scaling.md names it


QUERY_ALLOW_LIST: tuple[Allowed, ...] = (
    Allowed("app/services/event_feed.py", r"FROM events", "the platform feed"),
    Allowed("eventstore/log_reader.py", r"FROM events", "the runner's log reading"),
    Allowed("eventstore/positions.py", r"count\(\*\) AS events", "the runner's lag"),
    Allowed("projections/seals.py", r"NOT pg_visible_in_snapshot", "audit verify's forgery check"),
    Allowed(
        "app/services/webhook_delivery.py", r"FROM webhook_endpoints WHERE state", "the webhook dispatcher"
    ),
    Allowed("app/services/tenancy.py", r"FROM api_tokens WHERE secret_hash", "the token lookup"),
    Allowed("app/services/tenancy.py", r"FROM orgs", "the platform's organizations"),
    Allowed(
        "app/services/retention.py", r"FROM orgs WHERE personal_data_retention_days", "the retention sweep"
    ),
    Allowed("projections/scim.py", r"^SELECT \S+ FROM events WHERE type = ANY", "rebuilds"),
    Allowed("projections/scim_users.py", r"FROM events WHERE type = ANY", "rebuilds"),
    Allowed("projections/scim_users.py", r"^TRUNCATE scim_users$", "rebuilds"),
    Allowed("projections/org_schemas.py", r"FROM events WHERE type = ANY", "rebuilds"),
    Allowed("projections/org_schemas.py", r"^TRUNCATE org_schemas$", "rebuilds"),
    Allowed(
        "projections/scim_groups.py", r"^DELETE FROM (group_members|scim_groups|catalog_\w+)$", "rebuilds"
    ),
    Allowed("projections/access_grants.py", r"^DELETE FROM access_grants$", "rebuilds"),
    Allowed("projections/activity.py", r"^DELETE FROM __dyn__\.provisioning_activity$", "rebuilds"),
    Allowed("projections/analytics.py", r"^DELETE FROM __dyn__\.__dyn__$", "rebuilds"),
)


@dataclass(frozen=True)
class Statement:
    module: str
    line: int
    sql: str  # normalised: comments and string literals blanked, interpolations as __dyn__

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {' '.join(self.sql.split())[:160]}"


_DYNAMIC = "__dyn__"
_STARTS = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|TRUNCATE)\b")


def statements(packages: Iterable[str] = PACKAGES) -> Iterator[Statement]:
    """Every SQL statement written as a string (or f-string) in the modules of `packages`."""
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            module = str(path.relative_to(REPO))
            yield from statements_of(module, ast.parse(path.read_text(), str(path)))


def statements_of(module: str, tree: ast.Module) -> Iterator[Statement]:
    scopes = _Scopes(tree)
    inside_fstrings = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = scopes.render(node)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings
        ):
            text = node.value
        else:
            continue
        # SQL keywords are written in capitals here; prose that starts with "Delete" or "delete" is not SQL.
        if _STARTS.match(text) and _REFERENCE.search(normalise(text)):
            yield Statement(module, node.lineno, normalise(text))


class _Scopes:
    """Renders an f-string with the strings its names were first given, in its function or its module: SQL
    composed of named parts (a WHERE clause built beside the statement) is checked as a whole."""

    def __init__(self, tree: ast.Module) -> None:
        self._module = _first_assignments(tree.body)
        self._function_of: dict[int, dict[str, ast.expr]] = {}
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                names = _first_assignments(list(ast.walk(function)))
                for node in ast.walk(function):
                    self._function_of[id(node)] = names

    def render(self, node: ast.JoinedStr, depth: int = 0) -> str:
        local = self._function_of.get(id(node), {})
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
                continue
            assert isinstance(part, ast.FormattedValue)
            value = part.value
            named = (
                (local.get(value.id) or self._module.get(value.id)) if isinstance(value, ast.Name) else None
            )
            if isinstance(named, ast.Constant) and isinstance(named.value, str):
                parts.append(named.value)
            elif isinstance(named, ast.JoinedStr) and depth < 5:
                self._function_of.setdefault(id(named), local)
                parts.append(self.render(named, depth + 1))
            else:
                parts.append(_DYNAMIC)
        return "".join(parts)


def _first_assignments(nodes: Iterable[ast.AST]) -> dict[str, ast.expr]:
    names: dict[str, ast.expr] = {}
    for node in nodes:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names.setdefault(node.targets[0].id, node.value)
    return names


def normalise(sql: str) -> str:
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return re.sub(r"\{[^{}]*\}", _DYNAMIC, sql)


_KEYWORDS = (
    "WHERE|ON|USING|JOIN|LEFT|RIGHT|INNER|CROSS|FULL|SET|ORDER|GROUP|LIMIT|RETURNING|VALUES|SELECT|FOR|"
    "WINDOW|HAVING|UNION|AND|OR|NATURAL|LATERAL|DEFAULT|OFFSET|IN|AS|ONLY|TABLE"
)
_NAME = r"[a-z_][a-z0-9_]*"
_REFERENCE = re.compile(
    rf"\b(FROM|JOIN|INTO|UPDATE|USING|TRUNCATE)\s+(?:TABLE\s+)?(?:ONLY\s+)?"
    rf"((?:{_NAME}\.)?{_NAME})\b(?!\s*\()(?:\s+(?:AS\s+)?(?!(?:{_KEYWORDS})\b)({_NAME}))?"
)
# FROM a x, b y: the tables after the first.
_MORE = re.compile(
    rf"\s*,\s*((?:{_NAME}\.)?{_NAME})\b(?!\s*\()(?:\s+(?:AS\s+)?(?!(?:{_KEYWORDS})\b)({_NAME}))?"
)
_INSERT = re.compile(rf"\bINSERT\s+INTO\s+((?:{_NAME}\.)?{_NAME})(?:\s+AS\s+{_NAME})?\s*(\(([^()]*)\))?")
_ORG = rf"(?:({_NAME})\.)?org_id\b"
_PARAM = r"(?:ANY\s*\(\s*)?\$\d+"
_EQUALS = r"\s*(?:=|<=|>=|IS NOT DISTINCT FROM)\s*"
_ORG_TO_ORG = re.compile(rf"{_ORG}{_EQUALS}(?:ANY\s*\(\s*)?{_ORG}")
_ORG_TO_PARAM = re.compile(rf"{_ORG}{_EQUALS}{_PARAM}|{_PARAM}{_EQUALS}{_ORG}")
_ROW = re.compile(rf"\(\s*{_ORG}\s*,[^()]*\)\s*(?:=|<=|>=|<|>)\s*\(\s*\$\d+")
_UNNEST_COLUMNS = re.compile(rf"\bAS\s+({_NAME})\s*\(([^()]*\borg_id\b[^()]*)\)")
_USING_ORG = re.compile(r"\bUSING\s*\(\s*org_id\b")


@dataclass(frozen=True)
class Reference:
    table: str  # the table's own name, without its schema; __dyn__ when a Python expression names it
    qualifier: str  # how the statement names it: its alias, or the table


def references(sql: str) -> list[Reference]:
    found = []
    for match in _REFERENCE.finditer(sql):
        if match.group(1) == "INTO":
            continue  # an insert's target: see _unbound_inserts
        found.append(_reference(match.group(2), match.group(3)))
        position = match.end()
        if match.group(1) in ("FROM", "USING"):
            while more := _MORE.match(sql, position):
                found.append(_reference(more.group(1), more.group(2)))
                position = more.end()
    return found


def _reference(name: str, alias: str | None) -> Reference:
    table = name.rsplit(".", 1)[-1]
    return Reference(table, alias or table)


class _Links:
    """Which org_id columns a statement ties together, and which of them are tied to a parameter ("$")."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        while self._parent.get(node, node) != node:
            node = self._parent[node]
        return node

    def join(self, first: str, second: str) -> None:
        self._parent[self.find(first)] = self.find(second)

    def bound(self, node: str) -> bool:
        return self.find(node) == self.find("$")


def _links(sql: str, refs: list[Reference]) -> _Links:
    links = _Links()
    for match in _ORG_TO_PARAM.finditer(sql):
        links.join(match.group(1) or match.group(2) or "", "$")
    for match in _ROW.finditer(sql):
        links.join(match.group(1) or "", "$")
    for match in _ORG_TO_ORG.finditer(sql):
        links.join(match.group(1) or "", match.group(2) or "")
    unnested = [match.group(1) for match in _UNNEST_COLUMNS.finditer(sql)]
    for alias in unnested:
        links.join(alias, "$")  # unnest($1::uuid[], …) AS k(org_id, …): parameters
    if _USING_ORG.search(sql):
        for qualifier in [*(ref.qualifier for ref in refs), *unnested]:
            links.join(qualifier, "")  # JOIN … USING (org_id): both sides share the organization
    return links


def unbound(sql: str, org_tables: set[str]) -> list[str]:
    """The organization tables `sql` touches without tying them to given organizations."""
    refs = references(sql)
    links = _links(sql, refs)
    loose = [
        ref.table
        for ref in refs
        if (ref.table in org_tables or ref.table == _DYNAMIC)
        and not (links.bound(ref.qualifier) or links.bound(""))
    ]
    for match in _INSERT.finditer(sql):
        table = match.group(1).rsplit(".", 1)[-1]
        columns = match.group(3) or ""
        if (table in org_tables or table == _DYNAMIC) and not re.search(rf"\borg_id\b|{_DYNAMIC}", columns):
            loose.append(table)
    return loose


def allowance(statement: Statement) -> Allowed | None:
    for allowed in QUERY_ALLOW_LIST:
        if statement.module.startswith(allowed.module) and re.search(allowed.pattern, statement.sql.strip()):
            return allowed
    return None


def org_tables_of_migrations() -> set[str]:
    """Tables with an org_id column, as the migrations create them (their names without a schema)."""
    tables = set()
    for path in sorted((REPO / "migrations").glob("*.sql")):
        for match in re.finditer(
            rf"CREATE TABLE ((?:{_NAME}\.)?{_NAME}) \((.*?)\n\);", path.read_text(), re.S
        ):
            if re.search(r"^\s*org_id\s", match.group(2), re.M):
                tables.add(match.group(1).rsplit(".", 1)[-1])
    return tables
