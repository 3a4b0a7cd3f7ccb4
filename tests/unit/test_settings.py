from pathlib import Path

import pytest

from app.infrastructure.settings import ENVIRONMENT, Settings


def test_a_bad_setting_names_the_environment_variable() -> None:
    with pytest.raises(SystemExit, match="PORT='eighty'"):
        Settings.from_env({"PORT": "eighty"})


def test_settings_come_from_the_environment_with_types() -> None:
    settings = Settings.from_env(
        {"PORT": "8080", "SCIMLEDGER_WORKER": "false", "SCIMLEDGER_GROUP_PREFIX": "Acme"}
    )
    assert (settings.port, settings.worker, settings.group_prefix) == (8080, False, "Acme")
    assert Settings.from_env({}) == Settings()


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert [name for name in ENVIRONMENT if f"| `{name}` |" not in readme] == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCIMLEDGER_MAX_CONNECTIONS", "0"),
        ("SCIMLEDGER_MAX_HEADER_BYTES", "0"),
        ("SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS", "0.0001"),
        ("SCIMLEDGER_ORG_CONCURRENCY", "-1"),
        ("SCIMLEDGER_AUDIT_PAGE_SIZE", "0"),
        ("SCIMLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS", "0"),
    ],
)
def test_a_limit_that_would_refuse_everything_or_switch_itself_off_is_refused(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=f"{name}='{value}'"):
        Settings.from_env({name: value})
