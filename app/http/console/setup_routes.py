"""Setup, for the customer's IT admin who connects the identity provider: the integration's steps with this
deployment's values filled in, the organization's SCIM tokens (generated, shown once, rotated, revoked), and
the connection's status."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.console.pages import confirmation, render
from app.http.console.session import checked_form, console_session
from app.http.endpoint import services_of
from app.http.responses import base_url
from app.services import tenancy
from app.services.console import ConsoleSession
from domain.errors import DomainError, NotFound

SECTION = "setup"


async def _page(
    request: Request, session: ConsoleSession, status_code: int = 200, **shown: object
) -> Response:
    services = services_of(request)
    async with services.pool.acquire() as connection:
        tokens = [
            token for token in await tenancy.list_tokens(connection, session.org_id) if token.scope == "scim"
        ]
    active = [token for token in tokens if token.revoked_at is None]
    status = await services.connection_status.status(session.org_id, limit=10)
    return render(
        request,
        "setup.html",
        session,
        status_code=status_code,
        scim_base=base_url(request),
        group_prefix=services.settings.group_prefix,
        tokens=tokens,
        active_tokens=active,
        max_tokens=tenancy.MAX_ACTIVE_SCIM_TOKENS,
        last_call=status.last_call_at,
        errors=status.errors,
        errors_last_day=sum(count.count for count in status.errors_last_day),
        issued=shown.get("issued"),
        problem=shown.get("problem"),
        notice=shown.get("notice"),
    )


async def setup_page(request: Request) -> Response:
    return await _page(request, await console_session(request, SECTION))


async def generate_token(request: Request) -> Response:
    """A new SCIM token, shown on the page this POST answers and never again."""
    session = await console_session(request, SECTION)
    form = await checked_form(request, session)
    label = " ".join(str(form.get("label") or "").split())
    if not label:
        return await _page(
            request,
            session,
            400,
            problem="Name the token (for example “Okta production”), so that you can tell it apart later.",
        )
    try:
        async with services_of(request).pool.acquire() as connection:
            token_id, token = await tenancy.issue_token(
                connection, session.org_id, "scim", label[:100], session.actor
            )
    except DomainError as error:
        return await _page(request, session, 409, problem=str(error))
    return await _page(request, session, 201, issued={"id": token_id, "label": label, "token": token})


async def _scim_token(request: Request, session: ConsoleSession) -> tenancy.TokenInfo:
    """The organization's SCIM token the path names: only the identity provider's tokens are the setup's to
    revoke, not the host app's own (admin, auditor); anything else is not found."""
    try:
        token_id = uuid.UUID(request.path_params["token_id"])
    except ValueError:
        raise NotFound("No such SCIM token in this organization.") from None
    async with services_of(request).pool.acquire() as connection:
        tokens = await tenancy.list_tokens(connection, session.org_id)
    for token in tokens:
        if token.token_id == token_id and token.scope == "scim":
            return token
    raise NotFound("No such SCIM token in this organization.")


async def confirm_revoke(request: Request) -> Response:
    session = await console_session(request, SECTION)
    token = await _scim_token(request, session)
    name = token.label or str(token.token_id)
    return confirmation(
        request,
        session,
        f"Revoke the SCIM token “{name}”?",
        [
            "Your identity provider's requests with this token are refused from now on (401): if Okta still "
            "uses it, provisioning stops until you paste another token into Okta.",
            "Users, groups and their history stay as they are.",
            "A revoked token cannot be restored: generate a new one if you need one.",
        ],
        "Revoke the token",
        "/console/setup",
    )


async def revoke_token(request: Request) -> Response:
    session = await console_session(request, SECTION)
    await checked_form(request, session)
    token = await _scim_token(request, session)
    async with services_of(request).pool.acquire() as connection:
        await tenancy.revoke_token(connection, token.token_id, session.org_id, session.actor)
    return await _page(request, session, notice="The token is revoked: requests that send it are refused.")


ROUTES = [
    Route("/console/setup", setup_page, methods=["GET"]),
    Route("/console/setup/tokens", generate_token, methods=["POST"]),
    Route("/console/setup/tokens/{token_id}/revoke", confirm_revoke, methods=["GET"]),
    Route("/console/setup/tokens/{token_id}/revoke", revoke_token, methods=["POST"]),
]
