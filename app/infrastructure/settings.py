"""Settings, read from the environment once by whoever starts the process and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal, get_args, get_type_hints

import msgspec

from scim.patch import MAX_PATCH_COMPARISONS, PatchLimits
from scim.schema import IDENTIFIER_LENGTH_CEILING, MAX_IDENTIFIER_LENGTH

# Environment variable -> settings field. README's settings table lists the same names.
ENVIRONMENT = {
    "DATABASE_URL": "database_url",
    "SCIMLEDGER_REPLICA_DATABASE_URL": "replica_database_url",
    "SCIMLEDGER_REPLICA_FRESH_WAIT_SECONDS": "replica_fresh_wait_seconds",
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
    "SCIMLEDGER_RATE_LIMIT_SHARED": "rate_limit_shared",
    "SCIMLEDGER_DATABASE_TIMEOUT_SECONDS": "database_timeout_seconds",
    "SCIMLEDGER_AUDIT_MAX_UNSEALED_SECONDS": "audit_max_unsealed_seconds",
    "SCIMLEDGER_MAX_HEADER_BYTES": "max_header_bytes",
    "SCIMLEDGER_MAX_HEADERS": "max_headers",
    "SCIMLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS": "request_head_timeout_seconds",
    "SCIMLEDGER_REQUEST_BODY_TIMEOUT_SECONDS": "request_body_timeout_seconds",
    "SCIMLEDGER_KEEP_ALIVE_TIMEOUT_SECONDS": "keep_alive_timeout_seconds",
    "SCIMLEDGER_MAX_CONNECTIONS": "max_connections",
    "SCIMLEDGER_MAX_PATCH_COMPARISONS": "max_patch_comparisons",
    "SCIMLEDGER_MAX_IDENTIFIER_LENGTH": "max_identifier_length",
    "SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS": "statement_timeout_seconds",
    "SCIMLEDGER_ORG_CONCURRENCY": "org_concurrency",
    "SCIMLEDGER_TOKEN_CONCURRENCY": "token_concurrency",
    "SCIMLEDGER_MAX_FILTER_TERMS": "max_filter_terms",
    "SCIMLEDGER_MAX_FILTER_SUBSTRING_TERMS": "max_filter_substring_terms",
    "SCIMLEDGER_AUDIT_PAGE_SIZE": "audit_page_size",
    "SCIMLEDGER_AUDIT_MAX_PAGE_SIZE": "audit_max_page_size",
    "SCIMLEDGER_WEBHOOK_RETRY_SCHEDULE": "webhook_retry_schedule",
    "SCIMLEDGER_WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
    "SCIMLEDGER_WEBHOOK_TIMEOUT_SECONDS": "webhook_timeout_seconds",
    "SCIMLEDGER_WEBHOOK_SECRET_KEY": "webhook_secret_key",
    "SCIMLEDGER_AUDIT_SIGNING_KEY": "audit_signing_key",
    "SCIMLEDGER_PERSONAL_DATA_KEYS": "personal_data_keys",
    "SCIMLEDGER_CONSOLE_LINK_SECONDS": "console_link_seconds",
    "SCIMLEDGER_CONSOLE_IDLE_SECONDS": "console_idle_seconds",
    "SCIMLEDGER_CONSOLE_SESSION_SECONDS": "console_session_seconds",
    "SCIMLEDGER_SCIM_ERRORS_KEPT": "scim_errors_kept",
    "SCIMLEDGER_SCIM_ERRORS_FLUSH_SECONDS": "scim_errors_flush_seconds",
}

# Seconds between a webhook's failed attempt at an event and the next: about four days in all, so that a
# receiver down over a weekend still gets everything, in order, before its endpoint is disabled.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = "5,30,120,600,3600,10800,21600,43200,86400,86400,86400"

# The levels `logging` knows by name, lowest last; SCIMLEDGER_LOG_LEVEL takes one, in any case.
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class InvalidSetting(SystemExit):
    """A setting the process cannot run with; its message names the variable, the value and what is allowed."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    # A streaming replica of that database (a physical standby; several hosts with
    # target_session_attrs=prefer-standby are fine): /audit and the event feed's catch-up read there, each
    # answer stating how fresh it is (app/services/read_replica.py). SCIM reads and writes stay on the primary.
    replica_database_url: str | None = None
    # How long a read asked fresh (Cache-Control: no-cache) waits for the replica to replay up to the request.
    replica_fresh_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    data_dir: str = ".data"
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    max_page_size: int = 1000
    default_page_size: int = 100
    token_cache_seconds: float = 5.0
    public_url: str | None = None
    pool_size: int = 10
    log_level: LogLevel = "info"
    group_prefix: str = "Statsig"
    worker: bool = True
    runner_poll_seconds: float = 1.0
    runner_batch_delay_seconds: float = 0.05
    log_format: Literal["json", "text"] = "json"
    # Per token. Okta's own limits keep it far below these; they stop a runaway or stolen token.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 500
    # Count each token's requests in PostgreSQL, across every process, at a round trip per request; off, each
    # process counts its own (with N processes a token gets up to N times the rate).
    rate_limit_shared: bool = False
    database_timeout_seconds: float = 10.0
    # The runner seals within about a second; an event older than this and still unsealed means the runner
    # has been stopped or behind that long, or the event's seal was deleted: `audit verify` fails on it.
    audit_max_unsealed_seconds: float = 3600.0
    # The HTTP edge (app/http/protocol.py), bounded without a proxy in front: a request's line and headers
    # (16 KiB, as h11 and Node allow; Okta's and Entra's heads are under 4 KiB), how many headers, how long the
    # head and then the body (at most max_body_bytes) may take to arrive, how long an idle keep-alive
    # connection stays open, and how many connections may be open before requests get 503.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16 * 1024
    max_headers: Annotated[int, msgspec.Meta(ge=1)] = 100
    request_head_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    request_body_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    keep_alive_timeout_seconds: Annotated[int, msgspec.Meta(ge=1)] = 5
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 500
    # What one PATCH may examine, so that no request holds the event loop (see scim.patch).
    max_patch_comparisons: Annotated[int, msgspec.Meta(ge=1)] = MAX_PATCH_COMPARISONS
    # userName and externalId are indexed, and an index entry has a size limit (see scim.schema).
    max_identifier_length: Annotated[int, msgspec.Meta(ge=1, le=IDENTIFIER_LENGTH_CEILING)] = (
        MAX_IDENTIFIER_LENGTH
    )

    # What one organization's requests may take of the service (README: *Limits on one organization*).
    # PostgreSQL counts in milliseconds, and 0 would switch the timeout off.
    statement_timeout_seconds: Annotated[float, msgspec.Meta(ge=0.001)] = 5.0
    org_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0: a quarter of the pool
    token_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0: the organization's
    max_filter_terms: Annotated[int, msgspec.Meta(ge=1)] = 20
    max_filter_substring_terms: Annotated[int, msgspec.Meta(ge=0)] = 5
    # Events in a page of /audit/history when the client asks for none, and the most it may ask for.
    audit_page_size: Annotated[int, msgspec.Meta(ge=1)] = 1000
    audit_max_page_size: Annotated[int, msgspec.Meta(ge=1)] = 10000

    # Webhooks (app/services/webhooks.py). The schedule: comma-separated seconds, one per retry.
    webhook_retry_schedule: Annotated[
        str, msgspec.Meta(pattern=r"^\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*$")
    ] = DEFAULT_WEBHOOK_RETRY_SCHEDULE
    # Lets webhooks reach private, loopback and link-local addresses, and plain http: for tests and for
    # receivers on the same private network. Off, a webhook can never be turned against the internal network.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # Fernet keys (comma-separated; the first encrypts, every one decrypts, so a key can be rotated) for the
    # signing secrets at rest. Unset with the embedded database: a key generated in the data dir.
    webhook_secret_key: str | None = None
    # The Ed25519 private key that signs evidence bundles (PEM, or base64 of its 32 raw bytes). Unset with the
    # embedded database: a key generated in the data dir (app/infrastructure/audit_signing_key.py).
    audit_signing_key: str | None = None
    # Fernet keys (comma-separated; the first wraps, every one unwraps) that wrap each person's data key
    # (app/infrastructure/personal_data_keys.py). Unset with the embedded database: a key generated in the data dir.
    personal_data_keys: str | None = None
    # The console (app/services/console.py): how long a sign-in link may wait to be opened, and how long a
    # session lasts without a request and in all.
    console_link_seconds: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    console_idle_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    console_session_seconds: Annotated[float, msgspec.Meta(gt=0)] = 8 * 3600.0

    # The connection status (app/services/scim_call_errors.py): the SCIM errors an organization keeps, and
    # how long a process gathers an organization's errors before it writes them, in one statement.
    scim_errors_kept: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    scim_errors_flush_seconds: Annotated[float, msgspec.Meta(ge=0)] = 1.0

    @property
    def public_root(self) -> str | None:
        """SCIMLEDGER_PUBLIC_URL without its SCIM path: where people reach the service (the console's links)."""
        if not self.public_url:
            return None
        return self.public_url.rstrip("/").removesuffix("/scim/v2")

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(delay) for delay in self.webhook_retry_schedule.split(","))

    @property
    def patch_limits(self) -> PatchLimits:
        return PatchLimits(self.max_patch_comparisons, self.max_identifier_length)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        values = {field: source[name] for name, field in ENVIRONMENT.items() if source.get(name)}
        if "log_level" in values:
            values["log_level"] = values["log_level"].lower()
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as error:
            problem, _, where = str(error).partition(" - at `$.")
            field = where.rstrip("`")
            variable = next((name for name, target in ENVIRONMENT.items() if target == field), field)
            allowed = get_args(get_type_hints(cls).get(field))
            if allowed and all(isinstance(value, str) for value in allowed):
                problem = f"expected one of {', '.join(allowed)}"
            raise InvalidSetting(f"Invalid setting {variable}={source.get(variable)!r}: {problem}") from error
