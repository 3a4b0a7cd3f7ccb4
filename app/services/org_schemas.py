"""Organizations' own extension schemas: an org admin declares them, and the User resource type follows.

A declaration is an admin's action recorded on the log (OrgSchemaDeclared, then OrgSchemaRedeclared for
each replacement), with the table of current declarations, org_schemas, written in the same transaction, as
the catalog does. An organization's schema version is the sum of its schemas' stream versions: it grows
with every declaration, and the token lookup reads it with the org (app/services/tenancy.py), so every process sees a
new declaration as soon as its cached token expires, without a query per request; a request that names a URN
the cached type does not know reads the version afresh (UserTypes.current), so values sent right after a
declaration are neither dropped nor recorded as removed.
"""

from __future__ import annotations

import datetime
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.errors import DomainError, NotFound
from domain.org_schemas import OrgSchema, schema_id_for
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import EventStore
from scim.core_schemas import USER
from scim.declaration import (
    InvalidDeclaration,
    SchemaDeclaration,
    check_apart,
    declaration_of,
    parse_declaration,
    to_document,
    to_schema,
)
from scim.resource_type import ResourceType

# The organization's schema version, as the token lookup reads it alongside the org.
SCHEMA_VERSION_SQL = "(SELECT coalesce(sum(version), 0) FROM org_schemas WHERE org_schemas.org_id = {org})"


@dataclass(frozen=True, slots=True)
class DeclaredSchema:
    urn: str
    version: int
    declared_at: datetime.datetime
    declared_by: str
    declaration: dict[str, Any]


def parse(document: bytes) -> SchemaDeclaration:
    """A schema file, checked; what is wrong with it is the admin's to fix, so it is a DomainError."""
    try:
        return parse_declaration(document)
    except InvalidDeclaration as error:
        raise DomainError(str(error)) from error


_COLUMNS = "urn, version, declared_at, declared_by, declaration"


class OrgSchemaService:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def declare(
        self, org_id: uuid.UUID, declaration: SchemaDeclaration, metadata: Metadata
    ) -> tuple[int, bool]:
        """Declare or replace the org's schema of this URN; returns its version and whether it changed."""
        document = to_document(declaration)
        schema_id = schema_id_for(str(org_id), declaration.id)
        async with self._store.transaction() as transaction:
            # An organization's declarations take turns: two at once would each miss the other when checking
            # that their URNs do not nest, and two of one URN would fail on the stream's version.
            await transaction.lock_stream(schema_id_for(str(org_id), ""))
            others = await transaction.connection.fetch(
                "SELECT urn FROM org_schemas WHERE org_id = $1", org_id
            )
            try:
                check_apart(declaration.id, (row[0] for row in others))
            except InvalidDeclaration as error:
                raise DomainError(str(error)) from error
            schema: OrgSchema | None = (await transaction.load(org_id, [schema_id])).get(schema_id)
            if schema is None:
                schema = OrgSchema(org_id=str(org_id), urn=declaration.id, declaration=document)
            else:
                schema.declare(document)
            recorded = await transaction.save(org_id, [schema], metadata)
        return schema.version, bool(recorded)

    @staticmethod
    async def declared(connection: Connection, org_id: uuid.UUID) -> list[DeclaredSchema]:
        rows = await connection.fetch(
            f"SELECT {_COLUMNS} FROM org_schemas WHERE org_id = $1 ORDER BY lower(urn)", org_id
        )
        return [DeclaredSchema(*row) for row in rows]

    @staticmethod
    async def find(connection: Connection, org_id: uuid.UUID, urn: str) -> DeclaredSchema:
        row = await connection.fetchrow(
            f"SELECT {_COLUMNS} FROM org_schemas WHERE org_id = $1 AND lower(urn) = lower($2)", org_id, urn
        )
        if row is None:
            raise NotFound(
                f"This organization has declared no schema '{urn}' (see 'scimledger schema list')."
            )
        return DeclaredSchema(*row)


class UserTypes:
    """Each organization's User resource type (core, enterprise and its own extensions), by the org's schema
    version: building one makes msgspec structs, so it is done once per declaration, not per request.
    Bounded; one per process, made in the lifespan."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], capacity: int = 1000) -> None:
        self._pool = pool
        self._capacity = capacity
        self._types: OrderedDict[tuple[uuid.UUID, int], ResourceType] = OrderedDict()

    async def of(self, org_id: uuid.UUID, schema_version: int) -> ResourceType:
        if schema_version == 0:
            return USER  # most organizations declare nothing
        key = (org_id, schema_version)
        found = self._types.get(key)
        if found is not None:
            self._types.move_to_end(key)
            return found
        rows = await self._pool.fetch(
            "SELECT declaration FROM org_schemas WHERE org_id = $1 ORDER BY lower(urn)", org_id
        )
        # Built from what is declared now, which a token cached a moment ago may not know yet: newer, never
        # older, than the version asked for.
        resource_type = USER.with_extensions(to_schema(declaration_of(row[0])) for row in rows)
        self._types[key] = resource_type
        if len(self._types) > self._capacity:
            self._types.popitem(last=False)
        return resource_type

    async def knowing(
        self, org_id: uuid.UUID, schema_version: int, named: Iterable[tuple[str, Any]] = ()
    ) -> ResourceType:
        """The organization's User type, with the extensions it declared, if any.

        The type follows the schema version cached with the token. When `named` (a body's attributes, a
        PATCH's paths and pathless keys, with their values) holds a URN, or an attribute under one, that this
        type does not know, the organization may have declared it since: the current type is read, lest
        values sent just after `schema extend` be dropped, or a PUT served with an older type record them as
        removed."""
        resource_type = await self.of(org_id, schema_version)
        if any(not resource_type.knows(name, value) for name, value in named):
            return await self.current(org_id)
        return resource_type

    async def current(self, org_id: uuid.UUID) -> ResourceType:
        """The organization's User type as declared now, read past the token cache: for a request that names
        a schema URN the cached type does not know, which a declaration made a moment ago may have added.
        One indexed query, and only on such a miss."""
        version: int = await self._pool.fetchval(f"SELECT {SCHEMA_VERSION_SQL.format(org='$1')}", org_id)
        return await self.of(org_id, version)
