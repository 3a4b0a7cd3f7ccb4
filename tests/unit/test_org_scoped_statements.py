"""No statement of the service reads or writes across organizations but those docs/scaling.md names: each
one can then be routed to the node that holds its organization once tables are distributed by org_id. The
checker is tests/org_scope.py; its own tests come first, with statements it must refuse."""

from __future__ import annotations

import ast
import re

import pytest

from tests.org_scope import (
    KEY_EXCEPTIONS,
    PLAN,
    QUERY_ALLOW_LIST,
    REPO,
    allowance,
    normalise,
    org_tables_of_migrations,
    statements,
    statements_of,
    unbound,
)

ORG_TABLES = org_tables_of_migrations()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT user_id FROM scim_users WHERE user_name = $1",
        "SELECT user_id FROM scim_users WHERE org_id <> $1",
        "SELECT e.* FROM events AS e JOIN scim_users AS u ON u.user_id = e.stream_id WHERE u.org_id = $1",
        "SELECT m.user_id FROM group_members m, scim_groups g WHERE g.org_id = $1 AND g.group_id = m.group_id",
        "INSERT INTO scim_users (user_id, user_name) VALUES ($1, $2)",
        "UPDATE scim_groups SET linked = true WHERE group_id = $1",
        "DELETE FROM group_members WHERE user_id = $1",
        "DELETE FROM analytics.memberships",
        "WITH gone AS (DELETE FROM access_grants WHERE user_id = $1 RETURNING org_id) SELECT count(*) FROM gone",
        "SELECT count(*) FROM events WHERE (tx, position) > ($1::xid8, $2::bigint)",
    ],
)
def test_a_statement_that_does_not_bind_an_organization_table_to_given_organizations_is_caught(
    sql: str,
) -> None:
    assert unbound(normalise(sql), ORG_TABLES)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT user_id FROM scim_users WHERE org_id = $1 AND user_name = $2",
        "SELECT m.user_id FROM group_members AS m JOIN scim_users AS u ON u.org_id = m.org_id "
        "AND u.user_id = m.user_id WHERE m.org_id = $1",
        "SELECT g.project FROM analytics.groups g WHERE g.org_id = ANY($1::uuid[])",
        "SELECT * FROM events WHERE (org_id, tx, position) > ($1::uuid, $2::xid8, $3::bigint) AND org_id <= $1",
        "UPDATE scim_users SET version = r.version FROM unnest($1::uuid[], $2::uuid[], $3::int[]) "
        "AS r(org_id, user_id, version) WHERE scim_users.org_id = r.org_id AND scim_users.user_id = r.user_id",
        "SELECT u.name FROM analytics.users u JOIN unnest($1::uuid[], $2::uuid[]) AS k(org_id, user_id) "
        "USING (org_id, user_id)",
        "INSERT INTO scim_call_error_counts AS c (org_id, hour, status, count) VALUES ($1, $2, $3, $4)",
        "SELECT consumer.name FROM consumer_positions AS consumer",  # not an organization's table
    ],
)
def test_a_statement_bound_to_given_organizations_passes(sql: str) -> None:
    assert unbound(normalise(sql), ORG_TABLES) == []


def test_a_clause_composed_beside_the_statement_is_read_with_it() -> None:
    source = (
        "async def bound(connection):\n"
        "    where = 'org_id = $1'\n"
        "    return await connection.fetch(f'SELECT user_id FROM scim_users WHERE {where}')\n"
        "async def loose(connection):\n"
        "    where = 'user_name = $1'\n"
        "    return await connection.fetch(f'SELECT user_id FROM scim_users WHERE {where}')\n"
        "async def unknown(connection, table):\n"
        "    return await connection.fetch(f'DELETE FROM {table}')\n"
    )
    found = list(statements_of("example.py", ast.parse(source)))
    assert [bool(unbound(statement.sql, ORG_TABLES)) for statement in found] == [False, True, True]


def test_the_check_reads_the_service_s_statements() -> None:
    found = list(statements())
    # Far fewer would mean the scanner stopped recognising how our SQL is written.
    assert len(found) > 120
    modules = {statement.module for statement in found}
    assert {"eventstore/records.py", "projections/scim_users.py", "app/services/event_feed.py"} <= modules


def test_every_statement_of_the_service_is_bound_to_its_organizations_or_named_in_the_plan() -> None:
    loose = [
        f"{statement} touches {sorted(set(tables))}"
        for statement in statements()
        if (tables := unbound(statement.sql, ORG_TABLES)) and allowance(statement) is None
    ]
    assert loose == [], (
        "Bind these statements to their organizations (org_id = $n), or name them in docs/scaling.md and in "
        "tests/org_scope.py's QUERY_ALLOW_LIST:\n" + "\n".join(loose)
    )


def test_every_allowance_is_still_needed() -> None:
    used = {allowance(statement) for statement in statements() if unbound(statement.sql, ORG_TABLES)}
    assert [allowed for allowed in QUERY_ALLOW_LIST if allowed not in used] == []


def test_the_plan_names_every_exception_and_every_table() -> None:
    plan = PLAN.read_text()
    named = {allowed.name for allowed in QUERY_ALLOW_LIST}
    missing = [name for name in named if f"**{name}**" not in plan]
    missing += [index for _, index in KEY_EXCEPTIONS if index != "primary key" and f"`{index}`" not in plan]
    tables = {"schema_migrations"} | {
        match.rsplit(".", 1)[-1]
        for path in (REPO / "migrations").glob("*.sql")
        for match in re.findall(r"CREATE TABLE ([a-z_.]+)", path.read_text())
    }
    missing += [table for table in sorted(tables) if f"`{table}`" not in plan]
    assert missing == []
