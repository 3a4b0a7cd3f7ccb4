"""How the console draws a page: its templates (Starlette's Jinja2Templates, built by the app's lifespan), the
values every page is given, times shown in the viewer's time zone, and its page for what went wrong."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import Scope

from app.services.console import ConsoleSession

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
# Where the console's own CSS and script are served from: nothing is loaded from anywhere else.
STATIC_PATH = "/console/static"

# Each section's pages, as the navigation lists them; a session sees the sections its intent opens.
NAVIGATION: dict[str, list[tuple[str, str]]] = {
    "setup": [("Setup", "/console/setup")],
    "admin": [
        ("Users", "/console/users"),
        ("Awaiting erasure", "/console/erasure"),
        ("Access matrix", "/console/matrix"),
        ("Projects & roles", "/console/catalog"),
        ("Webhooks", "/console/webhooks"),
    ],
    "audit": [
        ("Seals", "/console/audit"),
        ("History", "/console/audit/history"),
        ("Access review", "/console/audit/review"),
        ("Timeline", "/console/audit/timeline"),
        ("As of", "/console/audit/as-of"),
    ],
}
HOME = {"setup": "/console/setup", "admin": "/console/users", "audit": "/console/audit"}


def when(instant: datetime.datetime | None) -> Markup:
    """An instant as a `<time>`: UTC as text and on hover; the console's script rewrites the text in the
    viewer's time zone (without scripts, UTC stays)."""
    if instant is None:
        return Markup("—")
    utc = instant.astimezone(datetime.UTC)
    shown = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(utc.isoformat(), shown)


def console_templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        # A name a template misspells is an error in tests, not an empty cell in production.
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["when"] = when
    environment.globals["static"] = STATIC_PATH
    return Jinja2Templates(env=environment)


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.state.templates
    return templates


def render(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """`template` with what every page shows: the session (None before sign-in), its CSRF token for forms,
    and the navigation its intent opens."""
    navigation = (
        [(section, NAVIGATION[section]) for section in NAVIGATION if session.may_open(section)]
        if session
        else []
    )
    return templates_of(request).TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "navigation": navigation,
            "current_path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


CONSOLE_PREFIX = "/console"


def is_console(scope: Scope) -> bool:
    path: str = scope["path"]
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


SESSION_KEY = "scimledger.console_session"


def session_of(request: Request) -> ConsoleSession | None:
    """The session `console_session` found for this request, if it got that far."""
    session: ConsoleSession | None = request.scope.get(SESSION_KEY)
    return session


def problem_page(
    request: Request, status: int, detail: str, session: ConsoleSession | None = None
) -> Response:
    """What went wrong, in words, with the way back."""
    return render(request, "problem.html", session, status_code=status, status=status, detail=detail)


def console_failure(scope: Scope) -> Response:
    """The console's last answer to what nothing else handled: a page of its own, from no template (the
    failure may be in one), naming the request's id for whoever looks into it."""
    request_id = escape(scope.get("state", {}).get("request_id") or "unknown")
    page = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>Something went wrong · scimledger</title>'
        "<main><h1>Something went wrong</h1><p>The console could not show this page. Nothing was changed by "
        f"it. Try again; if it happens again, give the app's administrator this request id: {request_id}.</p>"
        '<p><a href="/console">Back to the console</a></p></main></html>'
    )
    return HTMLResponse(page, status_code=500)


def console_problem(
    request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The console's answer to every error the edge's handlers answer (a domain refusal, a 404, a busy
    database): the problem page, in the session's frame when the request had one."""
    response = problem_page(request, status, detail, session_of(request))
    for name, value in (headers or {}).items():
        if name.lower() != "www-authenticate":  # a bearer challenge means nothing to a browser
            response.headers[name] = value
    return response


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def confirmation(
    request: Request,
    session: ConsoleSession,
    title: str,
    consequences: list[str],
    button: str,
    back: str,
    danger: bool = True,
    fields: dict[str, str] | None = None,
    inputs: dict[str, str] | None = None,
) -> Response:
    """The page that asks before a change that cannot simply be undone, saying what it will do (to the
    identity provider's view too), with a button that POSTs to the page's own path and a way back. `inputs`:
    text the admin must give with it (a reason), by field name and label."""
    return render(
        request,
        "confirm.html",
        session,
        title=title,
        consequences=consequences,
        button=button,
        back=back,
        danger=danger,
        action=request.url.path,
        fields=fields,
        inputs=inputs,
    )
