"""Signing in and out of the console.

`GET /console/sign-in/{org}/{secret}` shows what the link is for and a button; the button's POST uses the
link up and starts the session. A link is never used up by a GET, so a mail scanner or a chat preview that
fetches it leaves it for the person it was meant for.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.http.console.pages import HOME, problem_page, render
from app.http.console.session import (
    COOKIE,
    checked_form,
    clear_session_cookie,
    console_session,
    set_session_cookie,
)
from app.http.endpoint import services_of
from app.services.console import ANY_SECTION
from domain.errors import LinkRefused


def _link(request: Request) -> tuple[uuid.UUID, str]:
    try:
        return uuid.UUID(request.path_params["org"]), request.path_params["secret"]
    except ValueError:
        raise LinkRefused("This sign-in link is not valid: it may have been copied incompletely.") from None


def _refused(request: Request, error: LinkRefused) -> Response:
    return render(
        request, "link_refused.html", None, status_code=410 if error.gone else 404, detail=str(error)
    )


async def sign_in_page(request: Request) -> Response:
    try:
        info = await services_of(request).console.peek_link(*_link(request))
    except LinkRefused as error:
        return _refused(request, error)
    return render(request, "sign_in.html", None, link=info)


def _same_origin(request: Request) -> bool:
    """A sign-in posted from another site is refused, so that no one can sign a visitor into a session of
    theirs. Browsers say where a request comes from in Sec-Fetch-Site; Origin is the fallback for those that
    do not, and is "null" under this service's Referrer-Policy (no-referrer), which keeps the link's secret
    out of Referer headers."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    public = services_of(request).settings.public_root
    return origin in (None, "null", public) or origin == f"{request.url.scheme}://{request.url.netloc}"


async def sign_in(request: Request) -> Response:
    if not _same_origin(request):
        return problem_page(request, 403, "A sign-in must be sent from the sign-in page itself.")
    try:
        session, cookie = await services_of(request).console.sign_in(*_link(request))
    except LinkRefused as error:
        return _refused(request, error)
    response = RedirectResponse(HOME[session.intent], status_code=303)
    seconds = int(services_of(request).settings.console_session_seconds)
    set_session_cookie(request, response, cookie, seconds)
    return response


async def home(request: Request) -> Response:
    if COOKIE not in request.cookies:
        return render(request, "signed_out.html", None, status_code=401, ended=False)
    session = await console_session(request, ANY_SECTION)
    return RedirectResponse(HOME[session.intent], status_code=303)


async def sign_out(request: Request) -> Response:
    session = await console_session(request, ANY_SECTION)
    await checked_form(request, session)
    await services_of(request).console.sign_out(session)
    response = render(request, "signed_out.html", None, ended=True)
    clear_session_cookie(response)
    return response


ROUTES = [
    Route("/console", home, methods=["GET"]),
    Route("/console/sign-in/{org}/{secret}", sign_in_page, methods=["GET"]),
    Route("/console/sign-in/{org}/{secret}", sign_in, methods=["POST"]),
    Route("/console/sign-out", sign_out, methods=["POST"]),
]
