"""The access timeline, for the auditor: for a group or a user over a window, who held which Project × Role
when, as a chart drawn on the server (projections/access_timeline.py reads the bars, timeline_svg.py draws
them). Each bar links to the history of the events that opened and closed it: the user's events about that
group, between the grant and the revocation, at the grant's row."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console.audit_forms import (
    SECTION,
    BadInput,
    UnknownReference,
    bounded_window,
    field,
    form_instant,
    group_named,
    identifier,
    read_snapshot,
    resolve_user,
    window_fields,
)
from app.http.console.pages import render
from app.http.console.session import console_session
from app.http.console.timeline_svg import render_timeline
from app.http.endpoint import services_of
from app.services.console import ConsoleSession
from eventstore.pool import Connection
from projections import access_timeline, audit_history
from projections.access_timeline import TimelineBar, TimelinePage
from projections.audit import Snapshot

DEFAULT_WINDOW = datetime.timedelta(days=90)
SECOND = datetime.timedelta(seconds=1)


def bar_link(bar: TimelineBar) -> str:
    """The history of the events that opened and closed `bar`: the user's events about its group from the
    grant to the revocation (bounds widened to whole seconds, as the form shows them), at the grant's row."""
    since = bar.granted_at.replace(microsecond=0)
    params = {"user": str(bar.user_id), "group": str(bar.group_id), "from": form_instant(since)}
    if bar.revoked_at is not None:
        until = bar.revoked_at.replace(microsecond=0) + (SECOND if bar.revoked_at.microsecond else 0 * SECOND)
        params["to"] = form_instant(until)
    return f"/console/audit/history?{urlencode(params)}#event-{bar.granted_position}"


@dataclass(frozen=True, slots=True)
class _Chart:
    page: TimelinePage
    title: str


async def timeline_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    params = request.query_params
    form: dict[str, Any] = {name: params.get(name, "") for name in ("group", "user", "from", "to")}
    org_id, prefix = session.org_id, services_of(request).settings.group_prefix
    catalog = await read_snapshot(
        request, lambda connection: audit_history.catalog_of(connection, org_id, prefix)
    )
    groups = _groups(catalog)
    try:
        start, end = bounded_window(params, DEFAULT_WINDOW)
        form["from"], form["to"] = window_fields(params, start, end)
        group_id, user = _subject(params)
        cursor = field(params, "after")
    except BadInput as error:
        return _page(request, session, form, groups, None, 400, str(error))
    if group_id is None and user is None:
        return _page(request, session, form, groups, None)

    async def query(connection: Connection) -> _Chart:
        if group_id is not None:
            title = f"Who held {group_named(catalog, group_id)}"
            user_id = None
        else:
            assert user is not None
            user_id = await resolve_user(connection, org_id, user)
            title = f"What {user} held"
        try:
            page = await access_timeline.read_timeline(
                connection, org_id, start, end, group_id=group_id, user_id=user_id, cursor=cursor
            )
        except ValueError as error:  # a cursor of another timeline, or none at all
            raise BadInput(f"This page's link is not one of this timeline's pages ({error}).") from error
        if user_id is not None and page.bars:
            title = f"What {page.bars[0].user_name} held"  # the name, even when the field held the id
        return _Chart(page, title)

    try:
        chart = await read_snapshot(request, query)
    except BadInput as error:
        return _page(request, session, form, groups, None, 400, str(error))
    except UnknownReference as unknown:
        form[unknown.field] = ""
        return _page(request, session, form, groups, None, 404, str(unknown))
    return _page(request, session, form, groups, chart)


def _subject(params: Any) -> tuple[uuid.UUID | None, str | None]:
    group_id, user = identifier(params, "group"), field(params, "user")
    if group_id is not None and user is not None:
        raise BadInput("Choose a group or a user, not both: clear one of the two.")
    return group_id, user


def _groups(catalog: Snapshot) -> list[tuple[str, str, bool]]:
    """The organization's groups for the form's choice: (id, name, archived), live ones first, by name."""
    named = [
        (not catalog.live_group(group_id), catalog.group_name(group_id).casefold(), str(group_id))
        for group_id in catalog.groups
    ]
    return [
        (group_id, catalog.group_name(uuid.UUID(group_id)), archived)
        for archived, _, group_id in sorted(named)
    ]


def _page(
    request: Request,
    session: ConsoleSession,
    form: dict[str, Any],
    groups: list[tuple[str, str, bool]],
    chart: _Chart | None,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    svg, following = None, None
    if chart is not None:
        page = chart.page
        svg = Markup(
            render_timeline(page.bars, page.start, page.end, view=page.view, link=bar_link, title=chart.title)
        )
        if page.next_cursor is not None:
            kept = [(name, value) for name, value in request.query_params.multi_items() if name != "after"]
            following = f"{request.url.path}?{urlencode([*kept, ('after', page.next_cursor)])}"
    return render(
        request,
        "audit_timeline.html",
        session,
        status_code=status_code,
        form=form,
        groups=groups,
        error=error,
        chart=chart,
        svg=svg,
        following=following,
    )


ROUTES = [Route("/console/audit/timeline", timeline_page, methods=["GET"])]
