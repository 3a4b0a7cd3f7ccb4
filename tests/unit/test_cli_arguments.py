"""The CLI's arguments are parsed with types: a value that is not an id, a time or a seal head is a usage error
that names the option, found before any setting is read or any database reached."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.cli.exits import ExitCode
from app.cli.main import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["token", "revoke", "abc"],
            "argument token_id: 'abc' is not a token id (see 'scimledger token list --org ORG').",
        ),
        (
            ["audit", "history", "--org", "Acme", "--group", "nope"],
            "argument --group: 'nope' is not a group id.",
        ),
        (
            ["audit", "history", "--org", "Acme", "--since", "2026-13-01"],
            "argument --since: '2026-13-01' is not an ISO 8601 dateTime such as 2026-11-22T10:00:00Z.",
        ),
        (
            ["audit", "access", "--org", "Acme", "--from", "2026-01-01", "--to", "0001-01-01T00:00:00+14:00"],
            "argument --to: '0001-01-01T00:00:00+14:00' is outside the years 1 to 9999 in UTC.",
        ),
        (
            ["audit", "as-of", "--org", "Acme", "--at", "tomorrow"],
            "argument --at: 'tomorrow' is not an ISO 8601 dateTime",
        ),
        (
            ["audit", "verify", "--head", "zzz"],
            "argument --head: 'zzz' is not a head: expected POSITION:HEX as printed by 'audit head'.",
        ),
    ],
)
def test_a_value_that_is_not_one_is_a_usage_error_naming_its_option(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database that cannot be reached: the refusal must come before any attempt to reach it.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == ExitCode.USAGE
    error = capsys.readouterr().err
    assert expected in error, error
    assert "Traceback" not in error


def test_an_administrative_command_loads_neither_uvicorn_nor_the_http_edge() -> None:
    """Only `serve` needs them; the CLI's wiring comes from the composition root, app/bootstrap.py."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, app.cli.main; print(sorted({'app.http.app', 'app.cli.server', 'uvicorn'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
