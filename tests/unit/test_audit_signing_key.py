"""The evidence bundles' signing key: generated once in the data dir with the embedded database, read from
SCIMLEDGER_AUDIT_SIGNING_KEY otherwise, refused by name when neither is there."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from app.infrastructure.audit_signing_key import KEY_FILE_NAME, AuditSigningKey, public_key_text
from app.infrastructure.settings import Settings
from domain.errors import SigningKeyMissing


def test_the_embedded_database_gets_one_key_generated_in_its_data_dir_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    first = public_key_text(AuditSigningKey(settings).public_key())
    second = public_key_text(AuditSigningKey(settings).public_key())
    assert first == second  # a second process reads the key the first wrote
    key_file = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.unlink()
    assert public_key_text(AuditSigningKey(settings).public_key()) != first


def test_a_configured_key_wins_and_a_shared_database_without_one_is_refused_by_name(tmp_path: Path) -> None:
    configured = base64.b64encode(os.urandom(32)).decode()
    with_key = Settings(
        database_url="postgresql://db/x", data_dir=str(tmp_path), audit_signing_key=configured
    )
    embedded_with_key = Settings(data_dir=str(tmp_path), audit_signing_key=configured)
    assert public_key_text(AuditSigningKey(with_key).public_key()) == public_key_text(
        AuditSigningKey(embedded_with_key).public_key()
    )
    assert not (tmp_path / KEY_FILE_NAME).exists()
    without = AuditSigningKey(Settings(database_url="postgresql://db/x", data_dir=str(tmp_path)))
    with pytest.raises(SigningKeyMissing, match="SCIMLEDGER_AUDIT_SIGNING_KEY"):
        without.private_key()
    with pytest.raises(SigningKeyMissing, match="neither PEM nor base64"):
        AuditSigningKey(Settings(audit_signing_key="not a key!")).private_key()
