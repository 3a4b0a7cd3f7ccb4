"""The CLI as a script or a person at a shell meets it: real processes, exit codes from one table, quiet
when its reader goes away, a clear word on a bad setting, CSV headers always, reversed windows refused."""

from __future__ import annotations

import asyncio
import datetime
import re
import socket
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx

from app import tenancy
from app.cli import ACCESS_COLUMNS, HISTORY_COLUMNS
from app.exits import ExitCode
from app.services import Services
from eventstore.store import Metadata
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
