"""Admin, users: the organization's users (searched, filtered by status, paged), each with their groups and
status; removed from the organization and restored, with a confirmation that says what the identity provider
will see; invited before the identity provider is connected. The same services as the management API's
`/users` (app/http/api/directory_routes.py) and `scimledger user …`."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console.listing import PAGE_SIZE, actor_names, cursor_of, paged
from app.http.console.pages import confirmation, plural, render
from app.http.console.session import actor_of, checked_form, console_session, form_text
from app.http.endpoint import services_of
from app.services.console import ConsoleSession
from app.services.users import Invitation
from domain.errors import DomainError, NotFound, UserNameTaken
from projections import user_directory
from projections.user_directory import STATUS_FILTERS, UserDetail, UserFilter
from scim.errors import ScimError

SECTION = "admin"
# Longest search text taken: a userName or a name is far shorter; more is someone's paste gone wrong.
_MAX_SEARCH = 200


class UserKey(msgspec.Struct, frozen=True):
    sort_key: int


def _search(request: Request, name: str) -> str | None:
    text = " ".join(request.query_params.get(name, "").split())[:_MAX_SEARCH]
    return text.replace("\x00", "") or None


async def _users_page(
    request: Request, session: ConsoleSession, status_code: int = 200, **shown: Any
) -> Response:
    status = request.query_params.get("status") or ""
    if status not in STATUS_FILTERS:
        status = ""
    user_name, name = _search(request, "user_name"), _search(request, "name")
    wanted = dataclasses.replace(
        STATUS_FILTERS[status] if status else UserFilter(), user_name=user_name, name=name
    )
    after = cursor_of(request, "console-users", UserKey)
    async with services_of(request).pool.acquire() as connection:
        found = await user_directory.users_page(
            connection, session.org_id, wanted, after.sort_key if after else -1, PAGE_SIZE + 1
        )
    page, next_page = paged(request, found, "console-users", lambda item: UserKey(item[1]))
    return render(
        request,
        "users.html",
        session,
        status_code=status_code,
        users=[user for user, _ in page],
        next_page=next_page,
        first_page=after is None,
        status=status,
        statuses=list(STATUS_FILTERS),
        user_name=user_name or "",
        name=name or "",
        problem=shown.get("problem"),
    )


async def users_page(request: Request) -> Response:
    return await _users_page(request, await console_session(request, SECTION))


async def user_id_of(request: Request, session: ConsoleSession) -> uuid.UUID:
    """The user the path names (by id, or by userName ignoring case), in the session's organization only."""
    reference = request.path_params["user"]
    user_id = None
    if "\x00" not in reference:
        async with services_of(request).pool.acquire() as connection:
            user_id = await user_directory.find_user(connection, session.org_id, reference)
    if user_id is None:
        raise NotFound("No such user in this organization.")
    return user_id


async def _detail(request: Request, session: ConsoleSession, user_id: uuid.UUID) -> UserDetail:
    async with services_of(request).pool.acquire() as connection:
        detail = await user_directory.user_detail(connection, session.org_id, user_id)
    if detail is None:  # deleted since it was found
        raise NotFound("No such user in this organization.")
    return detail


async def _user_page(
    request: Request, session: ConsoleSession, user_id: uuid.UUID, notice: str | None = None
) -> Response:
    detail = await _detail(request, session, user_id)
    async with services_of(request).pool.acquire() as connection:
        actors = await actor_names(connection, session.org_id)
    resource = detail.resource
    return render(
        request,
        "user.html",
        session,
        user=detail.summary,
        groups=detail.groups,
        name=resource.get("name") or {},
        emails=[email.get("value") for email in resource.get("emails") or [] if email.get("value")],
        external_id=resource.get("externalId"),
        actors=actors,
        notice=notice,
    )


async def user_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    return await _user_page(request, session, await user_id_of(request, session))


async def confirm_remove(request: Request) -> Response:
    session = await console_session(request, SECTION)
    user = (await _detail(request, session, await user_id_of(request, session))).summary
    return confirmation(
        request,
        session,
        f"Remove {user.user_name} from {session.org_name}?",
        [
            f"Their access to every Project × Role is denied at once ({plural(user.groups, 'group')} now), and "
            "their group memberships are revoked within moments.",
            "Okta (or your other identity provider) then sees them inactive (active: false) over SCIM, and "
            "unassigns them from the app at its next sync.",
            "It holds until someone undoes it: a restore here, or an explicit reactivation in Okta. Okta's "
            "routine profile pushes do not bring them back.",
            *(
                []
                if user.member
                else [
                    "They already left the organization because their identity provider deactivated them; "
                    "removing them here too keeps them out if Okta sends them again as active in a routine "
                    "update: only an explicit reactivation in Okta brings them back."
                ]
            ),
            "Their history stays: who held what, and when, is kept for the audit.",
        ],
        "Remove from the organization",
        f"/console/users/{user.user_id}",
    )


async def remove_user(request: Request) -> Response:
    session = await console_session(request, SECTION)
    await checked_form(request, session)
    user_id = await user_id_of(request, session)
    await services_of(request).users.remove_from_organization(
        session.org_id, user_id, actor_of(request, session)
    )
    return await _user_page(
        request,
        session,
        user_id,
        "Removed from the organization: their access is denied from now on, and Okta will see them inactive.",
    )


async def confirm_restore(request: Request) -> Response:
    session = await console_session(request, SECTION)
    user = (await _detail(request, session, await user_id_of(request, session))).summary
    return confirmation(
        request,
        session,
        f"Restore {user.user_name} to {session.org_name}?",
        [
            "They become a member of the organization again, and active: Okta sees them active "
            "(active: true) over SCIM from its next request.",
            "The Project × Role access they lost is not given back by itself: Okta's next group push, or a "
            "grant in the app, gives it again.",
        ],
        "Restore",
        f"/console/users/{user.user_id}",
        danger=False,
    )


async def restore_user(request: Request) -> Response:
    session = await console_session(request, SECTION)
    await checked_form(request, session)
    user_id = await user_id_of(request, session)
    await services_of(request).users.restore(session.org_id, user_id, actor_of(request, session))
    return await _user_page(request, session, user_id, "Restored: a member of the organization, and active.")


async def invite_user(request: Request) -> Response:
    """A user recorded in the app before the identity provider is connected, as the API's invitation is: its
    import then finds them and manages them from then on."""
    session = await console_session(request, SECTION)
    form = await checked_form(request, session)
    user_name = form_text(form, "user_name")
    if user_name is None:
        return await _users_page(
            request, session, 400, problem="A user needs a userName (usually their e-mail)."
        )
    invitation = Invitation(
        user_name=user_name,
        email=form_text(form, "email"),
        given_name=form_text(form, "given_name"),
        family_name=form_text(form, "family_name"),
    )
    services = services_of(request)
    try:
        row = await services.users.invite(
            session.org_id,
            invitation,
            actor_of(request, session),
            services.settings.max_identifier_length,
        )
    except (DomainError, ScimError) as error:
        status = 409 if isinstance(error, UserNameTaken) else 400
        return await _users_page(request, session, status, problem=str(error))
    return await _user_page(request, session, row.user_id, "Invited: Okta's next import will find them.")


ROUTES = [
    Route("/console/users", users_page, methods=["GET"]),
    Route("/console/users", invite_user, methods=["POST"]),
    Route("/console/users/{user}", user_page, methods=["GET"]),
    Route("/console/users/{user}/remove", confirm_remove, methods=["GET"]),
    Route("/console/users/{user}/remove", remove_user, methods=["POST"]),
    Route("/console/users/{user}/restore", confirm_restore, methods=["GET"]),
    Route("/console/users/{user}/restore", restore_user, methods=["POST"]),
]
