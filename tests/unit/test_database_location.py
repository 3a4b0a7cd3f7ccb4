"""How the CLI names the database it refused or found empty: enough to tell databases apart, never a secret."""

from pathlib import Path

import pytest

from app.infrastructure.database import database_location
from app.infrastructure.settings import Settings


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://app:s3cret@db.example:6432/ledger", "database 'ledger' on db.example:6432"),
        ("postgresql://app:s3cret@db.example/ledger", "database 'ledger' on db.example:5432"),
        ("postgres://app:s3cret@h1:5432,h2:5433/ledger", "database 'ledger' on h1:5432,h2:5433"),
        (
            "postgresql://app:s3cret@/ledger?host=/run/postgresql",
            "database 'ledger' on /run/postgresql, port 5432",
        ),
        ("postgresql://app:s3cret@[::1]/ledger", "database 'ledger' on [::1]:5432"),
        ("postgresql://app:s3cret@db.example", "database 'app' on db.example:5432"),
    ],
)
def test_a_database_url_is_named_by_database_host_and_port_without_its_password(url: str, named: str) -> None:
    location = database_location(Settings(database_url=url))
    assert location == f"{named} (DATABASE_URL)"
    assert "s3cret" not in location


def test_the_embedded_database_is_named_by_its_data_dir(tmp_path: Path) -> None:
    location = database_location(Settings(data_dir=str(tmp_path)))
    assert location == f"the embedded PostgreSQL in {tmp_path.resolve()} (SCIMLEDGER_DATA_DIR)"
