"""The keys that encrypt webhook signing secrets at rest (Fernet, from `cryptography`).

A signing secret has to be read back in plaintext to sign (HMAC), so it cannot be hashed like a token; it
is encrypted instead, so that a database dump or a backup does not hand out every receiver's secret.

Where the key comes from:
- `SCIMLEDGER_WEBHOOK_SECRET_KEY`: one or more Fernet keys, comma-separated. The first encrypts; every one
  decrypts (`MultiFernet`), so a key is rotated by putting the new one first and keeping the old one until
  every secret has been rotated.
- unset, with the embedded database (no DATABASE_URL): a key generated once in the data dir, beside the
  database's own files, readable by its owner only. It protects dumps and backups of the database, not a copy
  of the whole data dir; set the variable to keep the key elsewhere.
- unset, with DATABASE_URL: none. The process still starts (most of it never touches a webhook, and every CLI
  command would otherwise need the key), but creating a webhook, rotating a secret and delivering are refused
  with `WebhookKeyMissing`, which names the variable.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.infrastructure.key_files import key_in
from app.infrastructure.settings import Settings
from domain.errors import WebhookKeyMissing

KEY_FILE_NAME = "webhook-secret.key"


class WebhookKeys:
    """Encrypts and decrypts signing secrets; the key is found (or generated) on first use, not at start-up."""

    def __init__(self, settings: Settings) -> None:
        self._configured = settings.webhook_secret_key
        self._key_file = None if settings.database_url else Path(settings.data_dir) / KEY_FILE_NAME
        self._fernet: MultiFernet | None = None

    def encrypt(self, secret: str) -> bytes:
        return self._keys().encrypt(secret.encode())

    def decrypt(self, encrypted: bytes) -> str:
        try:
            return self._keys().decrypt(encrypted).decode()
        except InvalidToken as error:
            raise WebhookKeyMissing(
                "A webhook secret cannot be decrypted with SCIMLEDGER_WEBHOOK_SECRET_KEY: the key that encrypted "
                "it is no longer among the configured keys. Put it back (after the new one), or rotate the "
                "endpoint's secret."
            ) from error

    def _keys(self) -> MultiFernet:
        if self._fernet is None:
            self._fernet = MultiFernet([Fernet(key) for key in self._key_texts()])
        return self._fernet

    def _key_texts(self) -> list[str]:
        if self._configured:
            return [key.strip() for key in self._configured.split(",") if key.strip()]
        if self._key_file is None:
            raise WebhookKeyMissing(
                "Webhook secrets are encrypted at rest, and no key is set: set SCIMLEDGER_WEBHOOK_SECRET_KEY to a "
                "Fernet key (python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
                ".decode())') in every process that uses this database."
            )
        return [key_in(self._key_file, lambda: Fernet.generate_key().decode(), WebhookKeyMissing)]
