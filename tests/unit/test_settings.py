from pathlib import Path

import pytest

from app.settings import ENVIRONMENT, Settings


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
