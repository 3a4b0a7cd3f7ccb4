"""The organization's history, for the auditor: every event told in words, narrowed by actor, user, group,
project, role, kind and window, a page at a time from an opaque cursor (projections/audit_history.py, which
/audit/history serves too)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console.audit_forms import (
    SECTION,
    BadInput,
    UnknownReference,
    catalog_subjects,
    choice,
    field,
    form_instant,
    group_named,
    identifier,
    read_snapshot,
    resolve_user,
    window,
)
from app.http.console.pages import render
from app.http.console.session import console_session
from app.http.endpoint import services_of
from eventstore.pool import Connection
from eventstore.records import LogPosition
from projections import audit_history
from projections.audit import Snapshot
from projections.audit_history import HistoryEntry, HistoryFilter

PAGE_SIZE = 100
FIELDS = ("actor", "user", "group", "project", "role", "kind", "from", "to")
KIND_LABELS = {
    "membership": "Group memberships",
    "status": "Users provisioned, deactivated, removed…",
    "profile": "Profile changes",
    "catalog": "Projects, roles and groups",
    "schema": "Schema declarations",
}


@dataclass(frozen=True, slots=True)
class ShownEntry:
    """An entry with what its row links to: the user it is about, the group it names."""

    entry: HistoryEntry
    user: str | None
    group: str | None


@dataclass(frozen=True, slots=True)
class _Found:
    entries: list[ShownEntry]
    next: LogPosition | None
    group_name: str | None


def _cursor(text: str | None) -> LogPosition | None:
    if text is None:
        return None
    try:
        return audit_history.decode_cursor(text)
    except ValueError as error:
        raise BadInput(
            "This page's link is not one of this history's pages: start again from the first."
        ) from error


async def history_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    params = request.query_params
    form: dict[str, Any] = {name: params.get(name, "") for name in FIELDS}
    try:
        since, until = window(params)
        form["from"], form["to"] = form_instant(since) or form["from"], form_instant(until) or form["to"]
        kind, group_id = choice(params, "kind", audit_history.EVENT_KINDS), identifier(params, "group")
        actor, user, project, role = (field(params, name) for name in ("actor", "user", "project", "role"))
        after = _cursor(field(params, "after"))
    except BadInput as error:
        return _page(request, session, form, status_code=400, error=str(error))
    org_id, prefix = session.org_id, services_of(request).settings.group_prefix

    async def query(connection: Connection) -> _Found:
        # Only a filter by catalog needs it (the page itself replays the catalog up to its cursor).
        narrowed = group_id is not None or project is not None or role is not None
        catalog = await audit_history.catalog_of(connection, org_id, prefix) if narrowed else Snapshot(prefix)
        group_name = group_named(catalog, group_id) if group_id is not None else None
        wanted = HistoryFilter(
            user=await resolve_user(connection, org_id, user) if user is not None else None,
            group=group_id,
            actor=actor,
            since=since,
            until=until,
            subjects=catalog_subjects(catalog, project, role),
            types=frozenset(audit_history.EVENT_KINDS[kind]) if kind is not None else None,
        )
        page = await audit_history.history_page(connection, org_id, prefix, wanted, PAGE_SIZE, after)
        shown = [
            ShownEntry(entry, entry.subject if entry.type in audit_history.USER_TYPES else None, entry.group)
            for entry in page.entries
        ]
        return _Found(shown, page.next, group_name)

    try:
        found = await read_snapshot(request, query)
    except UnknownReference as unknown:
        form[unknown.field] = ""
        return _page(request, session, form, status_code=404, error=str(unknown))
    return _page(
        request,
        session,
        form,
        entries=found.entries,
        following=_link(request, audit_history.encode_cursor(found.next)) if found.next else None,
        first=_link(request, None) if after is not None else None,
        group_name=found.group_name,
    )


def _link(request: Request, after: str | None) -> str:
    """This page's path and filters, at another page of its history (the first, for None)."""
    params = [
        (name, value) for name, value in request.query_params.multi_items() if name != "after" and value
    ]
    if after is not None:
        params.append(("after", after))
    return f"{request.url.path}?{urlencode(params)}"


def _page(
    request: Request,
    session: Any,
    form: dict[str, Any],
    status_code: int = 200,
    error: str | None = None,
    entries: list[ShownEntry] | None = None,
    following: str | None = None,
    first: str | None = None,
    group_name: str | None = None,
) -> Response:
    return render(
        request,
        "audit_history.html",
        session,
        status_code=status_code,
        form=form,
        kinds=KIND_LABELS,
        error=error,
        entries=entries or [],
        following=following,
        first=first,
        group_name=group_name,
        page_size=PAGE_SIZE,
    )


def history_link(user: uuid.UUID | str | None = None, group: uuid.UUID | str | None = None) -> str:
    """The history of a user or a group, for links from the other audit pages."""
    if user is not None:
        return f"/console/audit/history?user={user}"
    return f"/console/audit/history?group={group}"


ROUTES = [Route("/console/audit/history", history_page, methods=["GET"])]
