"""`/api/v1/orgs/{org}/projects` and `/roles`: list, create, rename, archive, through the catalog service the CLI
uses (app/services/catalog.py), so the same rules hold and the same events are recorded; and `/groups`: the
Project × Role groups, whether the identity provider linked each, their member counts, and their members."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import (
    decode_body,
    idempotent,
    org_access,
    page,
    page_after,
    page_limit,
    path_id,
    path_text,
    read_body,
)
from app.http.api.responses import ApiError, JsonResponse
from app.http.endpoint import services_of
from app.services.catalog import (
    KINDS,
    CatalogEntry,
    CatalogService,
    EntryKey,
    GroupKey,
    GroupListing,
    Kind,
    MemberKey,
    MemberListing,
)

Handler = Callable[[Request], Awaitable[Response]]


class NameInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class EntryOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    archived: bool
    created_at: datetime.datetime


class CreatedEntry(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    # The groups created with it: one for each live project or role of the other kind.
    groups_created: int


class ArchivedEntry(msgspec.Struct, frozen=True):
    id: uuid.UUID
    archived: bool
    # Memberships of its groups, which ended with them.
    memberships_revoked: int


def _entry(entry: CatalogEntry) -> EntryOutput:
    return EntryOutput(entry.id, entry.name, entry.archived, entry.created)


def _archived_too(request: Request) -> bool:
    text = request.query_params.get("archived", "false")
    if text not in ("true", "false"):
        raise ApiError(400, f"archived must be true or false; it was '{text}'.")
    return text == "true"


def _listing(kind: Kind) -> Handler:
    async def listing(request: Request) -> Response:
        access = await org_access(request, request.path_params["org"])
        limit, after = page_limit(request), page_after(request, kind.name, EntryKey)
        async with services_of(request).pool.acquire() as connection:
            entries = await CatalogService.entries(
                connection, kind, access.org_id, _archived_too(request), after, limit + 1
            )
        return page(
            entries, limit, kind.name, lambda entry: EntryKey(entry.name, entry.created, entry.id), _entry
        )

    return listing


def _creation(kind: Kind) -> Handler:
    async def creation(request: Request) -> Response:
        access = await org_access(request, request.path_params["org"])

        async def create(body: bytes) -> Response:
            name = decode_body(body, NameInput).name
            entity_id, groups = await services_of(request).catalog.create(
                kind, access.org_id, name, access.metadata
            )
            return JsonResponse(CreatedEntry(entity_id, name.strip(), groups), status_code=201)

        return await idempotent(request, access.principal, create)

    return creation


def _renaming(kind: Kind) -> Handler:
    async def renaming(request: Request) -> Response:
        access = await org_access(request, request.path_params["org"])
        name = decode_body(await read_body(request), NameInput).name
        services = services_of(request)
        async with services.pool.acquire() as connection:
            entity_id = await CatalogService.find(connection, kind, access.org_id, path_text(request, "ref"))
        await services.catalog.rename(kind, access.org_id, str(entity_id), name, access.metadata)
        async with services.pool.acquire() as connection:
            return JsonResponse(
                _entry(await CatalogService.entry(connection, kind, access.org_id, entity_id))
            )

    return renaming


def _archiving(kind: Kind) -> Handler:
    async def archiving(request: Request) -> Response:
        access = await org_access(request, request.path_params["org"])

        async def archive(body: bytes) -> Response:
            services = services_of(request)
            async with services.pool.acquire() as connection:
                entity_id = await CatalogService.find(
                    connection, kind, access.org_id, path_text(request, "ref")
                )
            # By id, so that a rename in between cannot make the reference name another one.
            revoked = await services.catalog.archive(kind, access.org_id, str(entity_id), access.metadata)
            return JsonResponse(ArchivedEntry(entity_id, True, revoked))

        return await idempotent(request, access.principal, archive)

    return archiving


class GroupOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    display_name: str
    project_id: uuid.UUID
    role_id: uuid.UUID
    # Linked by the identity provider (Okta's Push Groups): its membership is then the identity provider's.
    linked: bool
    members: int


class MemberOutput(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    user_name: str
    display_name: str | None
    since: datetime.datetime


def _group(group: GroupListing) -> GroupOutput:
    return GroupOutput(
        group.group_id, group.display_name, group.project_id, group.role_id, group.linked, group.members
    )


async def list_groups(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    limit, after = page_limit(request), page_after(request, "groups", GroupKey)
    async with services_of(request).pool.acquire() as connection:
        groups = await CatalogService.groups(connection, access.org_id, after, limit + 1)
    return page(groups, limit, "groups", lambda group: GroupKey(group.display_name, group.group_id), _group)


def group_id_of(request: Request) -> uuid.UUID:
    return path_id(request, "group", "group")


async def list_members(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    group_id = group_id_of(request)
    limit, after = page_limit(request), page_after(request, "members", MemberKey)
    async with services_of(request).pool.acquire() as connection:
        members = await CatalogService.members(connection, access.org_id, group_id, after, limit + 1)

    def shown(member: MemberListing) -> MemberOutput:
        return MemberOutput(member.user_id, member.user_name, member.display_name, member.since)

    return page(members, limit, "members", lambda member: MemberKey(member.since, member.user_id), shown)


ROUTES = [
    route
    for kind in KINDS.values()
    for route in (
        Route(f"/orgs/{{org}}/{kind.name}s", _listing(kind), methods=["GET"]),
        Route(f"/orgs/{{org}}/{kind.name}s", _creation(kind), methods=["POST"]),
        Route(f"/orgs/{{org}}/{kind.name}s/{{ref}}", _renaming(kind), methods=["PATCH"]),
        Route(f"/orgs/{{org}}/{kind.name}s/{{ref}}/archive", _archiving(kind), methods=["POST"]),
    )
] + [
    Route("/orgs/{org}/groups", list_groups, methods=["GET"]),
    Route("/orgs/{org}/groups/{group}/members", list_members, methods=["GET"]),
]
