"""Admin, erasure: the users who left the organization (deleted by the identity provider, or removed) and whose
personal data is still held, each with the date the retention policy erases them and a way to erase them now;
the erasure's confirmation (with the reason to give) and the retention policy. A user the identity provider
deleted has no user page (the directory drops them): this page is how an admin reaches them. The same
services as `scimledger user erase` / `org retention` and the management API's erasure and retention."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import encode_cursor
from app.http.console.listing import PAGE_SIZE, cursor_of
from app.http.console.pages import confirmation, render
from app.http.console.session import actor_of, checked_form, console_session, form_text
from app.http.console.users_routes import user_id_of
from app.http.endpoint import services_of
from app.services import retention
from app.services.console import ConsoleSession
from app.services.erasure import LeftKey
from domain.errors import DomainError, NotErasable

SECTION = "admin"
_LISTING = "console-erasure"


async def _erasure_page(request: Request, session: ConsoleSession, notice: str | None = None) -> Response:
    services = services_of(request)
    after = cursor_of(request, _LISTING, LeftKey)
    async with services.pool.acquire() as connection:
        policy = await retention.policy_of(connection, session.org_id)
    page = await services.erasure.awaiting(session.org_id, policy.days, PAGE_SIZE, after)
    next_page = f"/console/erasure?cursor={encode_cursor(_LISTING, page.next)}" if page.next else None
    return render(
        request,
        "erasure.html",
        session,
        users=page.users,
        next_page=next_page,
        first_page=after is None,
        retention=policy,
        notice=notice,
    )


async def erasure_page(request: Request) -> Response:
    return await _erasure_page(request, await console_session(request, SECTION))


async def _user_id(request: Request, session: ConsoleSession) -> uuid.UUID:
    """The user the path names: by id, deleted or not (a deleted user is listed nowhere but here); by userName
    while the directory lists them. An id of another organization's user names nobody in this one (the
    erasure service reads the session's organization's log only)."""
    try:
        return uuid.UUID(request.path_params["user"])
    except ValueError:
        return await user_id_of(request, session)


async def confirm_erase(request: Request) -> Response:
    session = await console_session(request, SECTION)
    user = await services_of(request).erasure.subject(session.org_id, await _user_id(request, session))
    refusal = user.erasure_refusal()
    if refusal is not None:  # a member, or erased already: asked before the admin gives a reason
        raise NotErasable(refusal)
    return confirmation(
        request,
        session,
        f"Erase the personal data of {user.described()}, for ever?",
        [
            "Their data key is destroyed: their name, userName, e-mail addresses and every other personal "
            "attribute can never be read again, here, in the API, in exports, or in any copy of the log.",
            "They leave every list of users, and their userName is free for someone new.",
            'Their history stays, with "[erased]" in place of their data: who held which Project × Role, '
            "when, granted by whom. The audit chain still verifies.",
            "The erasure is recorded with your name, the time and the reason you give: write a ticket number "
            "or a date, never the person's own name or address.",
        ],
        "Erase for ever",
        "/console/erasure" if user.deleted else f"/console/users/{user.id}",
        inputs={"reason": "Reason"},
    )


async def erase_user(request: Request) -> Response:
    session = await console_session(request, SECTION)
    form = await checked_form(request, session)
    user_id = await _user_id(request, session)
    erasure = await services_of(request).erasure.erase(
        session.org_id, user_id, form_text(form, "reason") or "", actor_of(request, session)
    )
    return await _erasure_page(
        request, session, f"Erased the personal data of user {user_id} (reason: {erasure.reason})."
    )


async def set_retention(request: Request) -> Response:
    """The organization's retention policy, as `scimledger org retention` sets it; an empty field turns it off."""
    session = await console_session(request, SECTION)
    form = await checked_form(request, session)
    text = form_text(form, "days")
    days = int(text) if text is not None and text.isdigit() else None
    if text is not None and days is None:
        raise DomainError(
            f"A retention period is a whole number of days, 1 to {retention.MAX_RETENTION_DAYS}."
        )
    async with services_of(request).pool.acquire() as connection:
        policy = await retention.set_policy(connection, session.org_id, retention.RetentionPolicy(days))
    return await _erasure_page(request, session, f"Retention of personal data: {policy.described()}.")


ROUTES = [
    Route("/console/erasure", erasure_page, methods=["GET"]),
    Route("/console/users/{user}/erase", confirm_erase, methods=["GET"]),
    Route("/console/users/{user}/erase", erase_user, methods=["POST"]),
    Route("/console/retention", set_retention, methods=["POST"]),
]
