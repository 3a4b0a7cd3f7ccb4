"""The CLI as a script or a person at a shell meets it: real processes, exit codes from one table, quiet
when its reader goes away, a clear word on a bad setting, CSV headers always, reversed windows refused, and
a database that is not migrated (or migrated by a newer release) refused by name and left untouched."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import socket
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from app.cli.audit_commands import ACCESS_COLUMNS, HISTORY_COLUMNS
from app.cli.exits import ExitCode
from app.infrastructure.migrate import available_migrations
from app.services import tenancy
from app.services.container import Services
from eventstore.records import Metadata
from projections.audit import AccessInterval
from projections.audit_history import HistoryEntry
from tests.conftest import REPO
from tests.service import CLI, free_port, run_cli

META = Metadata("token:cli-behaviour")
EARLY, LATE = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


async def new_org(pool: asyncpg.Pool) -> tenancy.Org:
    async with pool.acquire() as connection:
        return await tenancy.create_org(connection, f"cli-{uuid.uuid4().hex[:10]}")


async def test_a_reader_that_goes_away_ends_the_output_quietly_as_a_unix_tool_does(
    pool: asyncpg.Pool, services: Services, cli_env: dict[str, str]
) -> None:
    org = await new_org(pool)
    # More history than a pipe holds (64 KiB), so that the writer is still writing when `head` leaves.
    for index in range(600):
        await services.users.provision(org.org_id, {"userName": f"reader{index}@pipe.test"}, META)
    pipeline = await asyncio.to_thread(
        subprocess.run,
        [
            "bash",
            "-c",
            f'"{CLI}" audit history --org "{org.name}" | head -1; echo "status=${{PIPESTATUS[0]}}" >&2',
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pipeline.stdout.startswith("position"), pipeline.stdout
    assert pipeline.stderr.strip() == f"status={int(ExitCode.STDOUT_CLOSED)}", pipeline.stderr


def test_a_bad_log_level_names_the_setting_and_the_levels_it_takes(cli_env: dict[str, str]) -> None:
    for command in (["serve", "--port", str(free_port())], ["org", "list"]):
        refused = run_cli({**cli_env, "SCIMLEDGER_LOG_LEVEL": "loud"}, *command, check=False)
        assert refused.returncode == ExitCode.USAGE, refused.stderr
        assert "Traceback" not in refused.stderr
        assert "SCIMLEDGER_LOG_LEVEL='loud'" in refused.stderr
        assert "critical, error, warning, info, debug" in refused.stderr
    assert run_cli({**cli_env, "SCIMLEDGER_LOG_LEVEL": "DEBUG"}, "org", "list").returncode == ExitCode.OK


def test_a_busy_port_exits_with_its_own_code_not_the_one_for_a_tampered_log(cli_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run_cli(
            {**cli_env, "SCIMLEDGER_WORKER": "false"}, "serve", "--port", str(port), check=False
        )
    assert refused.returncode == ExitCode.NOT_STARTED, refused.stderr[-2000:]
    assert ExitCode.NOT_STARTED != ExitCode.TAMPERED


def test_the_readme_lists_every_exit_code_and_no_other() -> None:
    readme = (Path(REPO) / "README.md").read_text()
    section = readme.split("Exit codes are the same for every command", 1)[1].split("\n\n", 2)[1]
    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert listed == {int(code) for code in ExitCode}


async def test_an_empty_csv_still_has_its_header(pool: asyncpg.Pool, cli_env: dict[str, str]) -> None:
    org = await new_org(pool)
    history = run_cli(cli_env, "audit", "history", "--org", org.name, "--format", "csv")
    assert history.stdout.splitlines() == [",".join(HISTORY_COLUMNS)]
    access = run_cli(
        cli_env, "audit", "access", "--org", org.name, "--from", EARLY, "--to", LATE, "--format", "csv"
    )
    assert access.stdout.splitlines() == [",".join(ACCESS_COLUMNS)]
    table = run_cli(cli_env, "audit", "history", "--org", org.name)
    assert table.stdout.split() == list(HISTORY_COLUMNS)


def test_the_csv_columns_are_the_rows_keys() -> None:
    now = datetime.datetime.now(datetime.UTC)
    entry = HistoryEntry(1, now, "admin:a", None, "UserProvisioned", "s", "c")
    interval = AccessInterval("u", "n", "g", "p", "r", now, None, "admin:a", "push")
    assert (tuple(entry.to_row()), tuple(interval.to_row())) == (HISTORY_COLUMNS, ACCESS_COLUMNS)


async def test_a_reversed_window_is_refused_on_the_cli(pool: asyncpg.Pool, cli_env: dict[str, str]) -> None:
    org = await new_org(pool)
    access = run_cli(
        cli_env, "audit", "access", "--org", org.name, "--from", LATE, "--to", EARLY, check=False
    )
    assert access.returncode == ExitCode.REFUSED
    assert "--from" in access.stderr
    assert "reversed" in access.stderr
    history = run_cli(
        cli_env, "audit", "history", "--org", org.name, "--since", LATE, "--until", EARLY, check=False
    )
    assert history.returncode == ExitCode.REFUSED
    assert "--since" in history.stderr
    assert "reversed" in history.stderr


async def test_a_reversed_window_is_a_400_under_audit(pool: asyncpg.Pool, http: httpx.AsyncClient) -> None:
    org = await new_org(pool)
    async with pool.acquire() as connection:
        _, token = await tenancy.issue_token(connection, org.org_id, "auditor")
    headers = {"Authorization": f"Bearer {token}"}
    for path, params in (
        ("/audit/access", {"from": LATE, "to": EARLY}),
        ("/audit/history", {"since": LATE, "until": EARLY}),
    ):
        answer = await http.get(f"http://scim.test{path}", params=params, headers=headers)
        assert answer.status_code == 400, answer.text
        assert "reversed" in answer.json()["detail"]
    in_order = await http.get(
        "http://scim.test/audit/access", params={"from": EARLY, "to": LATE}, headers=headers
    )
    assert in_order.status_code == 200


async def schema_objects(url: str) -> tuple[set[str], set[str]]:
    """What a database holds that a migration could have created: its own objects, and the cluster's roles."""
    connection = await asyncpg.connect(url)
    try:
        objects = await connection.fetch(
            "SELECT nspname || '.' || relname AS name FROM pg_class JOIN pg_namespace ON relnamespace = pg_namespace.oid "
            "WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "UNION ALL SELECT 'schema ' || nspname FROM pg_namespace "
            "WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public') "
            "UNION ALL SELECT 'function ' || proname FROM pg_proc JOIN pg_namespace ON pronamespace = pg_namespace.oid "
            "WHERE nspname = 'public'"
        )
        roles = await connection.fetch("SELECT rolname FROM pg_roles")
    finally:
        await connection.close()
    return {row["name"] for row in objects}, {row["rolname"] for row in roles}


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"))


# Commands that read (or write rows into) the database, one of each kind, and the worker.
READERS = (
    ["org", "list"],
    ["org", "create", "Surprise"],
    ["token", "list", "--org", "Acme"],
    ["user", "list", "--org", "Acme"],
    ["projections", "status"],
    ["audit", "verify"],
    ["worker"],
)


async def test_a_command_refuses_an_unmigrated_database_names_it_and_creates_nothing(
    empty_database: str,
) -> None:
    """A new user's `org list` against a shared database once created 12 tables and a cluster-wide role."""
    before = await schema_objects(empty_database)
    env = {**os.environ, "DATABASE_URL": with_password(empty_database, "s3cret-pw")}
    database = urlsplit(empty_database).path.lstrip("/")
    for command in READERS:
        refused = run_cli(env, *command, check=False)
        assert refused.returncode == ExitCode.NOT_MIGRATED, (command, refused.stderr)
        assert f"database '{database}' on " in refused.stderr
        assert "was never migrated" in refused.stderr
        assert "scimledger migrate" in refused.stderr
        assert "s3cret-pw" not in refused.stderr + refused.stdout
        assert refused.stdout == ""
    assert await schema_objects(empty_database) == before
    assert before[0] == set(), "the database was empty to begin with"


async def test_an_older_database_and_a_newer_one_are_refused_each_with_its_own_remedy(
    empty_database: str,
) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database}
    assert run_cli(env, "migrate").returncode == ExitCode.OK
    newest = available_migrations()[-1]
    connection = await asyncpg.connect(empty_database)
    try:
        # As a database migrated by the previous release stands: every migration but the newest applied.
        await connection.execute("DELETE FROM schema_migrations WHERE version = $1", newest.version)
        older = run_cli(env, "org", "list", check=False)
        assert older.returncode == ExitCode.NOT_MIGRATED, older.stderr
        assert f"is behind this scimledger by 1 migration(s) ({newest.name})" in older.stderr
        assert "Run 'scimledger migrate'" in older.stderr

        # As one migrated by a newer release stands: a migration this code does not know.
        await connection.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3), (9999, '9999_future.sql', '')",
            newest.version,
            newest.name,
            newest.checksum,
        )
        newer = run_cli(env, "org", "list", check=False)
        assert newer.returncode == ExitCode.NEWER_SCHEMA, newer.stderr
        assert "was migrated by a newer scimledger" in newer.stderr
        assert "9999" in newer.stderr
        assert "Upgrade scimledger" in newer.stderr
    finally:
        await connection.close()


async def test_a_database_without_organizations_is_named_when_a_command_finds_none(
    empty_database: str,
) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database}
    run_cli(env, "migrate")
    database = urlsplit(empty_database).path.lstrip("/")
    listed = run_cli(env, "org", "list")
    assert listed.stdout.split() == ["id", "name"], "a header, and no row"
    assert f"no organizations in database '{database}' on " in listed.stderr
    assert json.loads(run_cli(env, "org", "list", "--format", "json").stdout) == []
    verified = run_cli(env, "audit", "verify")
    assert f"no organizations in database '{database}' on " in verified.stderr
    unknown = run_cli(env, "token", "issue", "--org", "Acme", check=False)
    assert unknown.returncode == ExitCode.REFUSED
    assert f"No organization 'Acme' in database '{database}' on " in unknown.stderr
