"""Admin, groups: the Project × Role matrix (projects as rows, roles as columns, each cell its group: linked by
the identity provider or not, and its member count), and a group's page: its members and its history, who
added and removed whom, when, and why."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import encode_cursor
from app.http.console.listing import PAGE_SIZE, actor_names, cursor_of, paged
from app.http.console.pages import render
from app.http.console.session import console_session
from app.http.endpoint import services_of
from app.services.catalog import PROJECT, ROLE, CatalogService, EntryKey, MemberKey
from app.services.console import ConsoleSession
from domain.errors import NotFound
from projections import group_history
from projections.group_history import GroupSummary, HistoryKey

SECTION = "admin"
# Entries of a group's history on its page; the rest is a page of its own.
_RECENT_HISTORY = 20
# Roles are the matrix's columns, all on one page: an organization has a handful. Beyond this many, the page
# says so rather than drawing a table no one can read.
MAX_MATRIX_ROLES = 200


async def matrix_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    after = cursor_of(request, "console-matrix", EntryKey)
    async with services_of(request).pool.acquire() as connection:
        projects = await CatalogService.entries(
            connection, PROJECT, session.org_id, False, after, PAGE_SIZE + 1
        )
        roles = await CatalogService.entries(
            connection, ROLE, session.org_id, False, None, MAX_MATRIX_ROLES + 1
        )
        shown, next_page = paged(
            request, projects, "console-matrix", lambda entry: EntryKey(entry.name, entry.created, entry.id)
        )
        # The groups of this page's rows, in one query, whatever the number of cells.
        groups = await CatalogService.groups(
            connection, session.org_id, projects=[project.id for project in shown]
        )
    cells = {(group.project_id, group.role_id): group for group in groups}
    return render(
        request,
        "matrix.html",
        session,
        projects=shown,
        roles=roles[:MAX_MATRIX_ROLES],
        more_roles=len(roles) > MAX_MATRIX_ROLES,
        cells=cells,
        next_page=next_page,
        first_page=after is None,
        group_prefix=services_of(request).settings.group_prefix,
    )


async def _group(request: Request, session: ConsoleSession) -> GroupSummary:
    """The group the path names, in the session's organization only."""
    try:
        group_id = uuid.UUID(request.path_params["group"])
    except ValueError:
        raise NotFound("No such group in this organization.") from None
    async with services_of(request).pool.acquire() as connection:
        group = await group_history.group_summary(connection, session.org_id, group_id)
    if group is None:
        raise NotFound(
            "No such group in this organization (the groups of an archived project or role are gone from it)."
        )
    return group


async def group_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    group = await _group(request, session)
    after = cursor_of(request, "console-members", MemberKey)
    async with services_of(request).pool.acquire() as connection:
        members = await CatalogService.members(
            connection, session.org_id, group.group_id, after, PAGE_SIZE + 1
        )
        history = await group_history.group_history(
            connection, session.org_id, group.group_id, None, _RECENT_HISTORY + 1
        )
        actors = await actor_names(connection, session.org_id)
    shown, next_page = paged(
        request, members, "console-members", lambda member: MemberKey(member.since, member.user_id)
    )
    older = (
        f"/console/groups/{group.group_id}/history?cursor="
        + encode_cursor("console-group-history", history[_RECENT_HISTORY - 1].key)
        if len(history) > _RECENT_HISTORY
        else None
    )
    return render(
        request,
        "group.html",
        session,
        group=group,
        members=shown,
        next_page=next_page,
        first_page=after is None,
        history=history[:_RECENT_HISTORY],
        older_history=older,
        whole_history=False,
        actors=actors,
    )


async def group_history_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    group = await _group(request, session)
    before = cursor_of(request, "console-group-history", HistoryKey)
    async with services_of(request).pool.acquire() as connection:
        history = await group_history.group_history(
            connection, session.org_id, group.group_id, before, PAGE_SIZE + 1
        )
        actors = await actor_names(connection, session.org_id)
    shown, older = paged(request, history, "console-group-history", lambda entry: entry.key)
    return render(
        request,
        "group.html",
        session,
        group=group,
        members=[],
        next_page=None,
        first_page=True,
        history=shown,
        older_history=older,
        whole_history=True,
        actors=actors,
    )


ROUTES = [
    Route("/console/matrix", matrix_page, methods=["GET"]),
    Route("/console/groups/{group}", group_page, methods=["GET"]),
    Route("/console/groups/{group}/history", group_history_page, methods=["GET"]),
]
