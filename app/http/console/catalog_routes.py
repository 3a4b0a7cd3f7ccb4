"""Admin, projects and roles: listed (archived ones too, on request), created, renamed, and archived after a
confirmation that says what the identity provider will see and how many memberships go. The same service
(CatalogService) and calls as the management API's `/projects` and `/roles` and `scimledger catalog …`; a
refused name (taken, too long) is shown on the page, and the change it refused is not made at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import encode_cursor
from app.http.console.listing import PAGE_SIZE, cursor_of
from app.http.console.pages import confirmation, plural, render
from app.http.console.session import actor_of, checked_form, console_session
from app.http.endpoint import services_of
from app.services.catalog import (
    KINDS,
    PROJECT,
    ROLE,
    ArchiveImpact,
    CatalogEntry,
    CatalogService,
    EntryKey,
    Kind,
)
from app.services.console import ConsoleSession
from domain.errors import DomainError, NameTaken, NotFound

SECTION = "admin"
Handler = Callable[[Request], Awaitable[Response]]


async def _catalog_page(
    request: Request, session: ConsoleSession, status_code: int = 200, **shown: Any
) -> Response:
    archived = request.query_params.get("archived") == "1"
    only = KINDS.get(request.query_params.get("show", ""))
    listings = []
    async with services_of(request).pool.acquire() as connection:
        for kind in (PROJECT, ROLE):
            if only is not None and kind is not only:
                continue
            after = cursor_of(request, f"console-{kind.name}", EntryKey) if kind is only else None
            entries = await CatalogService.entries(
                connection, kind, session.org_id, archived, after, PAGE_SIZE + 1
            )
            listings.append((kind, entries[:PAGE_SIZE], _next(request, kind, entries)))
    return render(
        request,
        "catalog.html",
        session,
        status_code=status_code,
        listings=listings,
        archived=archived,
        paging=only is not None,
        group_prefix=services_of(request).settings.group_prefix,
        problem=shown.get("problem"),
        notice=shown.get("notice"),
        typed=shown.get("typed", {}),
    )


def _next(request: Request, kind: Kind, entries: list[CatalogEntry]) -> str | None:
    if len(entries) <= PAGE_SIZE:
        return None
    last = entries[PAGE_SIZE - 1]
    cursor = encode_cursor(f"console-{kind.name}", EntryKey(last.name, last.created, last.id))
    following = request.url.include_query_params(show=kind.name, cursor=cursor)
    return f"/console/catalog?{following.query}"  # the page a creation's or a rename's answer shows too


async def catalog_page(request: Request) -> Response:
    return await _catalog_page(request, await console_session(request, SECTION))


def _name_of(form: Any) -> str:
    value = form.get("name")
    return value if isinstance(value, str) else ""


def _creation(kind: Kind) -> Handler:
    async def creation(request: Request) -> Response:
        session = await console_session(request, SECTION)
        name = _name_of(await checked_form(request, session))
        try:
            _, groups = await services_of(request).catalog.create(
                kind, session.org_id, name, actor_of(request, session)
            )
        except DomainError as error:
            status = 409 if isinstance(error, NameTaken) else 400
            return await _catalog_page(request, session, status, problem=str(error), typed={kind.name: name})
        notice = f"The {kind.name} “{' '.join(name.split())}” is created, with {plural(groups, 'new group')}."
        return await _catalog_page(request, session, 201, notice=notice)

    return creation


async def _entry(request: Request, session: ConsoleSession, kind: Kind) -> CatalogEntry:
    """The live project or role the path names (by id or name), in the session's organization only."""
    reference = request.path_params["ref"]
    if "\x00" in reference:
        raise NotFound(f"No such {kind.name} in this organization.")
    async with services_of(request).pool.acquire() as connection:
        try:
            entity_id = await CatalogService.find(connection, kind, session.org_id, reference)
        except NotFound:
            # Said without the path's text, which the page would otherwise show back.
            raise NotFound(f"No live {kind.name} of that id or name in this organization.") from None
        return await CatalogService.entry(connection, kind, session.org_id, entity_id)


def _rename_form(kind: Kind) -> Handler:
    async def rename_form(request: Request) -> Response:
        session = await console_session(request, SECTION)
        entry = await _entry(request, session, kind)
        return render(
            request, "rename.html", session, kind=kind.name, entry=entry, problem=None, typed=entry.name
        )

    return rename_form


def _renaming(kind: Kind) -> Handler:
    async def renaming(request: Request) -> Response:
        session = await console_session(request, SECTION)
        name = _name_of(await checked_form(request, session))
        entry = await _entry(request, session, kind)
        try:
            # By id, so that another rename in between cannot make the reference name another one.
            await services_of(request).catalog.rename(
                kind, session.org_id, str(entry.id), name, actor_of(request, session)
            )
        except DomainError as error:
            if isinstance(error, NotFound):
                raise
            status = 409 if isinstance(error, NameTaken) else 400
            return render(
                request,
                "rename.html",
                session,
                status_code=status,
                kind=kind.name,
                entry=entry,
                problem=str(error),
                typed=name,
            )
        notice = f"The {kind.name} “{entry.name}” is now “{' '.join(name.split())}”, and its groups renamed."
        return await _catalog_page(request, session, notice=notice)

    return renaming


def _archive_confirmation(kind: Kind) -> Handler:
    async def archive_confirmation(request: Request) -> Response:
        session = await console_session(request, SECTION)
        entry = await _entry(request, session, kind)
        async with services_of(request).pool.acquire() as connection:
            impact = await CatalogService.archive_impact(connection, kind, session.org_id, entry.id)
        return confirmation(
            request,
            session,
            f"Archive the {kind.name} “{entry.name}”?",
            _consequences(kind, impact),
            f"Archive the {kind.name}",
            "/console/catalog",
        )

    return archive_confirmation


def _consequences(kind: Kind, impact: ArchiveImpact) -> list[str]:
    """What archiving takes away, in the identity provider's terms, counted as it stands now."""
    if impact.groups == 0:
        groups = f"The {kind.name} has no group yet: nothing changes for Okta."
    elif impact.groups == 1:
        groups = "Its group leaves SCIM at once" + (
            ": it is linked in Okta, whose pushes to it fail from then on, and which shows it unlinked."
            if impact.linked_groups
            else " (it is not linked in Okta)."
        )
    else:
        linked = (
            f"{impact.linked_groups} of them {'is' if impact.linked_groups == 1 else 'are'} linked in Okta, "
            "whose pushes to them fail from then on, and which shows them unlinked."
            if impact.linked_groups
            else "none of them is linked in Okta."
        )
        groups = f"Its {impact.groups} groups leave SCIM at once: {linked}"
    memberships = (
        "No membership is revoked: its groups have no members."
        if impact.memberships == 0
        else f"1 membership is revoked at once: its member loses this {kind.name}'s access."
        if impact.memberships == 1
        else f"{impact.memberships} memberships are revoked at once: their members lose this {kind.name}'s "
        "access."
    )
    return [
        groups,
        memberships,
        f"The {kind.name} is kept, archived, for the history; it cannot be brought back from the console.",
    ]


def _archiving(kind: Kind) -> Handler:
    async def archiving(request: Request) -> Response:
        session = await console_session(request, SECTION)
        await checked_form(request, session)
        entry = await _entry(request, session, kind)
        revoked = await services_of(request).catalog.archive(
            kind, session.org_id, str(entry.id), actor_of(request, session)
        )
        notice = (
            f"The {kind.name} “{entry.name}” is archived: its groups left SCIM and "
            f"{plural(revoked, 'membership')} {'was' if revoked == 1 else 'were'} revoked."
        )
        return await _catalog_page(request, session, notice=notice)

    return archiving


ROUTES = [Route("/console/catalog", catalog_page, methods=["GET"])] + [
    route
    for kind in KINDS.values()
    for route in (
        Route(f"/console/catalog/{kind.name}s", _creation(kind), methods=["POST"]),
        Route(f"/console/catalog/{kind.name}s/{{ref}}/rename", _rename_form(kind), methods=["GET"]),
        Route(f"/console/catalog/{kind.name}s/{{ref}}/rename", _renaming(kind), methods=["POST"]),
        Route(f"/console/catalog/{kind.name}s/{{ref}}/archive", _archive_confirmation(kind), methods=["GET"]),
        Route(f"/console/catalog/{kind.name}s/{{ref}}/archive", _archiving(kind), methods=["POST"]),
    )
]
