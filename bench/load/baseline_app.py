"""The ceilings of this stack, served the way scimledger serves: Starlette, asyncpg, msgspec, one uvicorn worker.

- GET /trivial: a msgspec-encoded JSON body, no database: what the HTTP layer alone can do.
- POST /insert: one INSERT into a table shaped like the event log, inside an explicit transaction.
- GET /select/{id}: one indexed SELECT.

    DATABASE_URL=... uvicorn --factory bench.load.baseline_app:create_app
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventstore.pool import create_pool

_encoder = msgspec.json.Encoder()

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_events (
    position   bigint      GENERATED ALWAYS AS IDENTITY,
    tx         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    org_id     uuid        NOT NULL,
    stream_id  uuid        NOT NULL,
    version    integer     NOT NULL,
    type       text        NOT NULL,
    payload    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (org_id, stream_id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS baseline_events_log ON baseline_events (tx, position);
"""


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def create_app() -> Starlette:
    org_id = uuid.UUID(int=1)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # BASELINE_POOL=service: the service's own pool settings (no session reset on release), to show the
        # ceiling on equal terms; otherwise asyncpg's defaults, the bare stack.
        if os.environ.get("BASELINE_POOL") == "service":
            pool = await create_pool(os.environ["DATABASE_URL"], min_size=4, max_size=10)
        else:
            pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=4, max_size=10)
        await pool.execute(SCHEMA)
        yield {"pool": pool}
        await pool.close()

    async def trivial(request: Request) -> Response:
        return JsonResponse(
            {"status": "ok", "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]}
        )

    async def insert(request: Request) -> Response:
        body = await request.body()
        pool: asyncpg.Pool = request.state.pool
        async with pool.acquire() as connection, connection.transaction():
            position = await connection.fetchval(
                "INSERT INTO baseline_events (org_id, stream_id, version, type, payload) "
                "VALUES ($1, $2, 1, 'UserProvisioned', $3::jsonb) RETURNING position",
                org_id,
                uuid.uuid4(),
                body.decode() or "{}",
            )
        return JsonResponse({"position": position}, status_code=201)

    async def select(request: Request) -> Response:
        pool: asyncpg.Pool = request.state.pool
        row = await pool.fetchrow(
            "SELECT position, stream_id, payload FROM baseline_events WHERE org_id = $1 AND stream_id = $2 "
            "AND version = 1",
            org_id,
            uuid.UUID(int=int(request.path_params["n"])),
        )
        return JsonResponse({"found": row is not None})

    return Starlette(
        routes=[
            Route("/trivial", trivial, methods=["GET"]),
            Route("/insert", insert, methods=["POST"]),
            Route("/select/{n:int}", select, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
