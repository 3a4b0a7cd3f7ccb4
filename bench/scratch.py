"""Helpers the benchmarks share: a database of a benchmark's own on the server scimledger uses, dropped afterwards whatever happens."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from cryptography.fernet import Fernet

from app.infrastructure.personal_data_keys import personal_data_cipher
from app.infrastructure.settings import Settings
from eventstore.personal_data import PersonalDataCipher
from eventstore.records import PayloadSeal, encode_event


@functools.cache
def service_keys() -> dict[str, str]:
    """The keys a service needs when it runs with DATABASE_URL (with the embedded database it generates them in
    its data dir): the key-encryption key of personal data, without which every write of a user is refused.
    One per benchmark run, shared by every server and CLI command the run starts on its databases."""
    return {"SCIMLEDGER_PERSONAL_DATA_KEYS": Fernet.generate_key().decode()}


def load_env(url: str) -> dict[str, str]:
    """The environment of a service (and of the bare baseline app) under a load generator: one token sends
    thousands of requests a second, so neither the per-token rate limit nor the per-organization cap on
    requests in progress may refuse them; logs in JSON, read back for the errors the service logged."""
    return {
        **service_keys(),
        "DATABASE_URL": url,
        "SCIMLEDGER_LOG_LEVEL": "warning",
        "SCIMLEDGER_LOG_FORMAT": "json",
        "SCIMLEDGER_TOKEN_CACHE_SECONDS": "60",
        "SCIMLEDGER_RATE_LIMIT_PER_SECOND": "0",
        "SCIMLEDGER_ORG_CONCURRENCY": "1000",
    }


def personal_data_keys() -> str:
    """`service_keys`' key-encryption key, for a service built in process."""
    return service_keys()["SCIMLEDGER_PERSONAL_DATA_KEYS"]


@functools.cache
def personal_data() -> PersonalDataCipher:
    """The cipher of `personal_data_keys`, for a benchmark's own pool on a database a service writes: without
    it, the pool would read the personal values as stored (encrypted)."""
    return personal_data_cipher(Settings(personal_data_keys=personal_data_keys()))


@asynccontextmanager
async def scratch_database(server: str) -> AsyncIterator[str]:
    name = f"scimledger_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


EVENT_ROW_COLUMNS = [
    "org_id",
    "stream_id",
    "version",
    "type",
    "schema_version",
    "payload",
    "occurred_at",
    "actor",
    "request_id",
]


def event_rows(org_id: uuid.UUID, aggregate: Any, seal: PayloadSeal | None = None) -> list[tuple[Any, ...]]:
    """An aggregate's pending events as rows of the events table, as the store would write them (`seal`: how
    the store's cipher encrypts their personal values, if it has one)."""
    rows = []
    for event in aggregate.collect_events():
        encoded = encode_event(event, org_id, seal)
        rows.append(
            (
                org_id,
                event.originator_id,
                encoded.version,
                encoded.type,
                encoded.schema_version,
                encoded.payload,
                encoded.occurred_at,
                "token:bench",
                None,
            )
        )
    return rows


async def copy_events(target: Any, rows: list[tuple[Any, ...]], chunk: int = 50_000) -> None:
    """Load rows straight into the log with COPY (a pool or a connection), a chunk per transaction."""
    for start in range(0, len(rows), chunk):
        await target.copy_records_to_table(
            "events", records=rows[start : start + chunk], columns=EVENT_ROW_COLUMNS
        )
