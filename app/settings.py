"""Settings, read from the environment once by whoever starts the process and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import msgspec

# Environment variable -> settings field. README's settings table lists the same names.
ENVIRONMENT = {
    "DATABASE_URL": "database_url",
    "HOST": "host",
    "PORT": "port",
    "SCIMLEDGER_DATA_DIR": "data_dir",
    "SCIMLEDGER_MAX_BODY_BYTES": "max_body_bytes",
    "SCIMLEDGER_MAX_PAGE_SIZE": "max_page_size",
    "SCIMLEDGER_DEFAULT_PAGE_SIZE": "default_page_size",
    "SCIMLEDGER_TOKEN_CACHE_SECONDS": "token_cache_seconds",
    "SCIMLEDGER_PUBLIC_URL": "public_url",
    "SCIMLEDGER_DB_POOL_SIZE": "pool_size",
    "SCIMLEDGER_LOG_LEVEL": "log_level",
    "SCIMLEDGER_GROUP_PREFIX": "group_prefix",
    "SCIMLEDGER_WORKER": "worker",
    "SCIMLEDGER_RUNNER_POLL_SECONDS": "runner_poll_seconds",
    "SCIMLEDGER_RUNNER_BATCH_DELAY_SECONDS": "runner_batch_delay_seconds",
    "SCIMLEDGER_LOG_FORMAT": "log_format",
    "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "rate_limit_per_second",
    "SCIMLEDGER_RATE_LIMIT_BURST": "rate_limit_burst",
    "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "database_timeout_seconds",
    "SCIMLEDGER_AUDIT_PAGE_SIZE": "audit_page_size",
    "SCIMLEDGER_AUDIT_MAX_PAGE_SIZE": "audit_max_page_size",
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    data_dir: str = ".data"
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    max_page_size: int = 1000
    default_page_size: int = 100
    token_cache_seconds: float = 5.0
    public_url: str | None = None
    pool_size: int = 10
    log_level: str = "info"
    group_prefix: str = "Statsig"
    worker: bool = True
    runner_poll_seconds: float = 1.0
    runner_batch_delay_seconds: float = 0.05
    log_format: Literal["json", "text"] = "json"
    # Per token. Okta's own limits keep it far below these; they stop a runaway or stolen token.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 500
    database_timeout_seconds: float = 10.0
    # Events in a page of /audit/history when the client asks for none, and the most it may ask for.
    audit_page_size: int = 1000
    audit_max_page_size: int = 10000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        values = {field: source[name] for name, field in ENVIRONMENT.items() if source.get(name)}
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as error:
            problem, _, where = str(error).partition(" - at `$.")
            field = where.rstrip("`")
            variable = next((name for name, target in ENVIRONMENT.items() if target == field), field)
            raise SystemExit(f"Invalid setting {variable}={source.get(variable)!r}: {problem}") from error
