"""The organization as of an instant, for the auditor: its users with their status and groups, its groups with
their members, replayed from the log (projections/audit_state.py `state_at`, which /audit/as-of streams). A
large organization is shown in part, and the page says so: the whole state is /audit/as-of's, or the CLI's."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console.audit_forms import SECTION, BadInput, field, form_instant, instant
from app.http.console.pages import render
from app.http.console.session import console_session
from app.http.endpoint import services_of
from projections import audit_state
from scim.folding import fold

USERS_SHOWN = 500
GROUPS_SHOWN = 200
MEMBERS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class GroupShown:
    id: str
    name: str
    linked: bool
    members: list[tuple[str, str]]  # (id, userName), the first MEMBERS_SHOWN
    count: int


async def as_of_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    params = request.query_params
    text, wanted = params.get("at", ""), params.get("user", "")
    try:
        at, needle = instant(params, "at", "At"), field(params, "user")
    except BadInput as error:
        return render(
            request,
            "audit_as_of.html",
            session,
            400,
            error=str(error),
            at=None,
            at_field=text,
            user_filter=wanted,
        )
    if at is None:
        now = form_instant(datetime.datetime.now(datetime.UTC))
        return render(
            request, "audit_as_of.html", session, error=None, at=None, at_field=now, user_filter=wanted
        )
    services = services_of(request)
    state = await audit_state.state_at(services.pool, session.org_id, at, services.settings.group_prefix)
    names = {user.id: user.user_name for user in state.users}
    groups: list[GroupShown] = []
    group_count = 0
    for row in state.group_rows():
        group_count += 1
        if len(groups) < GROUPS_SHOWN:
            members: list[str] = row["members"]
            shown = [(member, names.get(member, member)) for member in members[:MEMBERS_SHOWN]]
            groups.append(GroupShown(row["id"], row["displayName"], row["linked"], shown, len(members)))
    # A large organization is shown in part: a part of the userName (ignoring case) finds someone in it.
    folded = fold(needle) if needle is not None else None
    matching = [user for user in state.users if folded is None or folded in fold(user.user_name)]
    rows = state.user_rows(matching[:USERS_SHOWN])
    return render(
        request,
        "audit_as_of.html",
        session,
        error=None,
        at=at,
        at_field=form_instant(at),
        users=list(rows),
        user_count=len(matching),
        user_filter=needle or "",
        groups=groups,
        group_count=group_count,
        users_shown=USERS_SHOWN,
        groups_shown=GROUPS_SHOWN,
        members_shown=MEMBERS_SHOWN,
    )


ROUTES = [Route("/console/audit/as-of", as_of_page, methods=["GET"])]
