"""Around every request: its id, its path as routed, its metrics and access log line, a SCIM 500 for anything
unhandled; and the security headers every response carries."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.api.responses import api_error_response, is_api
from app.http.console.pages import console_failure, is_console
from app.http.operations import Metrics
from app.http.responses import FAILED_DETAIL, error_response
from app.infrastructure import logs
from app.infrastructure.admission import release_admission

log = logging.getLogger("scimledger.http")
access = logging.getLogger("scimledger.access")

# What nginx records when the client closes the connection before the response: no response is sent.
_CLIENT_CLOSED_REQUEST = 499
_REQUEST_ID = re.compile(r"^[\w.:@/-]{1,128}$")


# Headers that keep browsers from treating any response as anything but data. `serve` gives them to uvicorn
# as its default headers rather than adding them here, because uvicorn answers requests it cannot parse as
# HTTP itself, without the app, and those answers must carry them too.
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
    # One policy for every response, the console's pages included (uvicorn sends these on every response, so a
    # page could not loosen it with a header of its own: a browser enforces both): nothing but this service's
    # own stylesheet, script and images, forms sent only here, no frames. For JSON, as strict as 'none'.
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("Strict-Transport-Security", "max-age=31536000"),
]


# Where the path a request was sent to is kept when routing uses its normalized form (see `_normalize_path`).
_RECEIVED_PATH = "scimledger.received_path"
# An unmatched path is logged and named in the 404 up to this length: enough to see what was wrong.
_MAX_SHOWN_PATH = 300


def received_path(scope: Scope) -> str:
    """The path as the client sent it, shortened if it is long, its control characters escaped: a `%0a` in
    a path would otherwise start a forged line in a text log."""
    path: str = scope.get(_RECEIVED_PATH, scope["path"])
    shown = path if len(path) <= _MAX_SHOWN_PATH else path[:_MAX_SHOWN_PATH] + "…"
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", shown)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _normalize_path(scope: Scope, endpoints: Mapping[str, str], bases: tuple[str, ...]) -> None:
    """Route `/scim/v2//Users`, `/scim/v2/Users//ID` and `/scim/v2/Users/` as the path without the extra
    slashes, as many proxies and servers do: Okta admins paste a base URL that ends in a slash and Okta
    appends "/Users" to it. An empty segment names nothing here, so no other resource is reached this way.

    `endpoints` maps each SCIM endpoint's path, lowercased, to its own spelling (`/scim/v2/users` →
    `/scim/v2/Users`): a client that spells an endpoint in another case (Microsoft's reference tests request
    `/users`) reaches it. Only the base and the endpoint's name are matched so; an id after them is not.
    `bases` are the lowercase starts of those paths (`/scim/v2/`): a path under none of them is not looked up."""
    path: str = scope["path"]
    raw_path = scope.get("raw_path") or b""
    if b"%2f" in raw_path.lower():
        # An encoded slash is part of a segment, not a separator: routed as one (once decoded, by the server),
        # `/scim/v2/Users%2F<id>` would reach a user, and past a proxy that allows paths by their raw form.
        # Routed undecoded, it matches no route and its 404 names it.
        scope["path"] = scope[_RECEIVED_PATH] = raw_path.decode("latin-1")
        return
    normalized = path
    if "//" in path or (path.endswith("/") and path != "/"):
        normalized = re.sub("/{2,}", "/", path).rstrip("/") or "/"
    if normalized.lower().startswith(bases):  # the management API's paths, the hot ones, are not looked up
        normalized = _endpoint_spelled(normalized, endpoints)
    if normalized != path:
        scope[_RECEIVED_PATH] = path
        scope["path"] = normalized


def _endpoint_spelled(path: str, endpoints: Mapping[str, str]) -> str:
    """`path` with its endpoint spelled as its route spells it (see `_normalize_path`)."""
    segments = path.split("/", _MOST_SEGMENTS + 1)
    for count in range(_MOST_SEGMENTS, _ENDPOINT_SEGMENTS - 1, -1):
        head = "/".join(segments[: count + 1])
        canonical = endpoints.get(head.lower())
        if canonical is not None:
            return canonical + path[len(head) :]
    return path


def endpoint_bases(endpoints: Mapping[str, str]) -> tuple[str, ...]:
    """The lowercase starts (`/scim/v2/`) of the endpoints of `endpoint_spellings`."""
    return tuple({"/".join(head.split("/")[:_ENDPOINT_SEGMENTS]) + "/" for head in endpoints})


# The segments of an endpoint's path after the leading slash: `/scim/v2/Users` has 3, `/scim/v2/Users/.search` 4.
_ENDPOINT_SEGMENTS = 3
_MOST_SEGMENTS = 4


def endpoint_spellings(paths: Iterable[str]) -> dict[str, str]:
    """What `EdgeMiddleware` takes as `endpoints`: every fixed path of the routes up to its 4th segment
    (`/scim/v2/Users`, `/scim/v2/Users/.search`, not `/scim/v2/Users/{id}`), by its lowercase form."""
    heads = set()
    for path in paths:
        segments = path.split("/")
        heads |= {"/".join(segments[: count + 1]) for count in range(_ENDPOINT_SEGMENTS, _MOST_SEGMENTS + 1)}
    return {head.lower(): head for head in heads if "{" not in head and head.count("/") >= _ENDPOINT_SEGMENTS}


class EdgeMiddleware:
    """Around every request: an id (the client's X-Request-Id when it sends a sane one), echoed and put on
    every log line and event the request causes; repeated slashes in the path collapsed before routing; the
    request's metrics and its access log line, by route template (never the raw path, which may hold a
    userName; an unmatched request has no template, so its line names the path received, e-mail addresses
    redacted); a SCIM 500 for anything unhandled; and, once the response has ended, the request's admission
    given back (app/infrastructure/admission.py). One layer for all of it: each ASGI layer costs every request a
    coroutine and a frame more."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Mapping[str, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints
        self.bases = endpoint_bases(endpoints)
        # Ids need only be unique, not unguessable: a random prefix per process and a counter cost nothing,
        # where uuid4 (a urandom call per request) took 3% of a GET.
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                # Not one quoting an e-mail address: the id is on every log line and, in plaintext, on every
                # event the request causes, where no erasure can reach it.
                sane = _REQUEST_ID.match(candidate) and not logs.quotes_email(candidate)
                request_id = candidate if sane else None
                break
        request_id = request_id or f"{self._id_prefix}{next(self._id_counter):016x}"
        _normalize_path(scope, self.endpoints, self.bases)
        scope.setdefault("state", {})["request_id"] = request_id
        token = logs.request_id.set(request_id)
        echoed = (b"x-request-id", request_id.encode())
        responded: int | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = message["status"]
                message["headers"] = [*message.get("headers", []), echoed]
            await send(message)

        disconnected = False
        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # The client hung up before its body arrived whole (Okta gives up on a slow request), so nothing
            # was applied and nobody is left to answer. Not the service's failure, so not a 500 either.
            disconnected = True
        except Exception as error:
            log.exception("unhandled %s", type(error).__name__, extra={"error_type": type(error).__name__})
            if responded is None:  # otherwise the response is cut short, which is all that can be done
                response = (
                    api_error_response(scope, 500, FAILED_DETAIL)
                    if is_api(scope)
                    else console_failure(scope)
                    if is_console(scope)
                    else error_response(500, FAILED_DETAIL)
                )
                await response(scope, receive, send_with_headers)
        finally:
            release_admission(scope)
            route = _route_template(scope)
            seconds = time.perf_counter() - started
            status = responded if responded is not None else _CLIENT_CLOSED_REQUEST if disconnected else 500
            self.metrics.observe(route, scope["method"], status, seconds)
            if access.isEnabledFor(logging.INFO):
                # Metrics keep "unmatched", one series for any path; the log line says which path it was.
                path = logs.redact(received_path(scope)) if route == _UNMATCHED else None
                access.info(
                    "%s %s %d",
                    scope["method"],
                    path or route,
                    status,
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "path": path,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
            logs.request_id.reset(token)


_UNMATCHED = "unmatched"


def _route_template(scope: Scope) -> str:
    path: str | None = getattr(scope.get("route"), "path", None)
    return _UNMATCHED if path is None else path
