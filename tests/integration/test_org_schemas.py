"""Declared schemas on the log and in org_schemas, and the per-organization User types built from them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from app.services import tenancy
from app.services.container import Services
from app.services.org_schemas import parse
from domain.org_schemas import OrgSchema, schema_id_for
from eventstore.records import Metadata
from scim.core_schemas import USER
from tests.integration.test_scim_projection import rebuild

ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
ADMIN = Metadata(actor="admin:test")


def acme(*names: str, urn: str = ACME) -> Any:
    return parse(json.dumps({"id": urn, "attributes": [{"name": name} for name in names]}).encode())


async def schema_rows(pool: asyncpg.Pool, org_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM org_schemas WHERE org_id = $1 ORDER BY schema_id", org_id)
    return [dict(row) for row in rows]


async def test_a_redeclaration_is_a_new_version_and_the_first_declaration_still_loads_as_it_was(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    assert await services.schemas.declare(org_id, acme("costCode"), ADMIN) == (1, True)
    assert await services.schemas.declare(org_id, acme("costCode"), ADMIN) == (1, False)
    assert await services.schemas.declare(org_id, acme("region"), ADMIN) == (2, True)
    schema_id = schema_id_for(str(org_id), ACME)
    async with services.store.transaction() as transaction:
        loaded = (await transaction.load(org_id, [schema_id]))[schema_id]
        history = (await transaction.read_streams(org_id, [schema_id]))[schema_id]
    assert isinstance(loaded, OrgSchema)
    assert loaded.version == 2
    assert [attribute["name"] for attribute in loaded.declaration["attributes"]] == ["region"]
    assert [event.type for event in history] == ["OrgSchemaDeclared", "OrgSchemaRedeclared"]
    assert [attribute["name"] for attribute in history[0].payload["declaration"]["attributes"]] == [
        "costCode"
    ]
    assert {event.actor for event in history} == {"admin:test"}


async def test_rebuilding_from_the_log_gives_the_declared_schemas_rows(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    await services.schemas.declare(org_id, acme("costCode"), ADMIN)
    await services.schemas.declare(org_id, acme("costCode", "region"), ADMIN)
    before = await schema_rows(pool, org_id)
    assert [(row["urn"], row["version"], row["declared_by"]) for row in before] == [(ACME, 2, "admin:test")]
    await pool.execute("DELETE FROM org_schemas WHERE org_id = $1", org_id)

    await rebuild(services, pool)

    assert await schema_rows(pool, org_id) == before


async def test_user_types_are_built_once_per_schema_version_and_follow_a_new_declaration(
    services: Services, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"org-{uuid.uuid4().hex[:10]}")
        _, token = await tenancy.issue_token(connection, org.org_id)
    authenticator = tenancy.Authenticator(pool, cache_seconds=0)
    undeclared = await authenticator.authenticate(token)
    assert undeclared is not None
    assert undeclared.schema_version == 0
    assert await services.user_types.of(org.org_id, 0) is USER

    await services.schemas.declare(org.org_id, acme("costCode"), ADMIN)
    first = await authenticator.authenticate(token)
    assert first is not None
    assert first.schema_version == 1
    user_type = await services.user_types.of(org.org_id, first.schema_version)
    assert user_type.extension(ACME) is not None
    assert user_type.resolve(ACME, "costCode", None) is not None
    assert await services.user_types.of(org.org_id, first.schema_version) is user_type

    await services.schemas.declare(org.org_id, acme("region"), ADMIN)
    second = await authenticator.authenticate(token)
    assert second is not None
    assert second.schema_version == 2
    redeclared = await services.user_types.of(org.org_id, second.schema_version)
    assert redeclared.resolve(ACME, "region", None) is not None
    assert redeclared.resolve(ACME, "costCode", None) is None
