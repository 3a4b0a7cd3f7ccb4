"""Who is at the console: the session its cookie names, what its intent opens, and the CSRF token every form
must carry. Everything a console page reads or changes is its session's organization's."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from app.http.auth import check_rate
from app.http.console.pages import SESSION_KEY, problem_page, render
from app.http.endpoint import services_of
from app.services.console import ConsoleSession
from eventstore.records import Metadata

COOKIE = "scimledger_console"
COOKIE_PATH = "/console"
# A form is a few fields; a larger body is no form of ours.
_MAX_FORM_BYTES = 64 * 1024


class SignInRequired(Exception):
    """No live session: the page says how to get a new link."""


class SectionRefused(Exception):
    """The session's intent does not open this page (an audit session cannot remove users)."""

    def __init__(self, session: ConsoleSession, section: str) -> None:
        super().__init__(section)
        self.session = session
        self.section = section


class FormRefused(Exception):
    """A form without this session's CSRF token (403), or one no form of ours sends (400): refused, nothing
    done."""

    def __init__(self, session: ConsoleSession, detail: str, status: int = 403) -> None:
        super().__init__(detail)
        self.session = session
        self.detail = detail
        self.status = status


async def console_session(request: Request, section: str) -> ConsoleSession:
    """The request's session, which must open `section`; counted against its organization's share of the
    service as any of its requests is."""
    cookie = request.cookies.get(COOKIE)
    services = services_of(request)
    session = await services.console.session(cookie) if cookie else None
    if session is None:
        raise SignInRequired
    if not session.may_open(section):
        raise SectionRefused(session, section)
    # For the pages of errors raised after this point. In the scope, which is the request's own: the state
    # (request.state) may be shared between requests by a server that does not copy it for each.
    request.scope[SESSION_KEY] = session
    await check_rate(request, session.session_id)
    services.admission.enter(request.scope, session.org_id, session.session_id)
    return session


async def checked_form(request: Request, session: ConsoleSession) -> FormData:
    """The request's form, if it carries the session's CSRF token (compared in constant time)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _MAX_FORM_BYTES:
        raise FormRefused(session, "The form is larger than any of the console's forms.")
    form = await request.form(max_files=0, max_fields=50)
    token = form.get("csrf_token")
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf_token):
        raise FormRefused(
            session,
            "This form was not sent from this session's page (its security token is missing or stale), so "
            "nothing was done. Go back, reload the page and try again.",
        )
    # U+0000 is in no name and PostgreSQL's text cannot hold it: refused here for every form at once.
    if any(isinstance(value, str) and "\x00" in value for value in form.values()):
        raise FormRefused(
            session, "A field holds a NUL character (U+0000), which no name can; nothing was done.", 400
        )
    return form


def form_text(form: FormData, name: str) -> str | None:
    """A form's text field with its white space folded; None when it is empty or absent."""
    value = form.get(name)
    text = " ".join(value.split()) if isinstance(value, str) else ""
    return text or None


def actor_of(request: Request, session: ConsoleSession) -> Metadata:
    """What the events of a console action record of who did it: `console:<label>`, and the request's id."""
    state: dict[str, Any] = request.scope.get("state", {})
    return session.metadata(state.get("request_id"))


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        # Lax: sent when the host app links to a console page, never on another site's form or fetch; the
        # CSRF token covers every change all the same.
        samesite="lax",
        # Behind a proxy that terminates TLS the request arrives as http: SCIMLEDGER_PUBLIC_URL says https.
        secure=request.url.scheme == "https"
        or (services_of(request).settings.public_root or "").startswith("https://"),
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")


async def _sign_in_required(request: Request, error: Exception) -> Response:
    response = render(request, "signed_out.html", None, status_code=401, ended=False)
    clear_session_cookie(response)
    return response


async def _section_refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, SectionRefused)
    return problem_page(
        request,
        403,
        f"This session was opened for {error.session.intent}, which does not include this page. Ask the app "
        "for a link of the kind you need.",
        error.session,
    )


async def _form_refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, FormRefused)
    return problem_page(request, error.status, error.detail, error.session)


CONSOLE_EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    SignInRequired: _sign_in_required,
    SectionRefused: _section_refused,
    FormRefused: _form_refused,
}
