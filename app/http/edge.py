"""The HTTP edge shared by every route: SCIM responses and errors, auth, request bodies, request ids."""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import asyncpg
import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.operations import RETRY_AFTER_SECONDS, Metrics
from app.infrastructure import logs
from app.services.container import Services
from app.services.tenancy import Principal, TokenScope
from domain.errors import (
    ArchivedError,
    DomainError,
    InactiveMember,
    IncompatibleRedeclaration,
    InvalidMember,
    NameTaken,
    NotFound,
    OrgNameTaken,
    PreconditionFailed,
    UserDeletedError,
    UserNameTaken,
)
from eventstore.pool import DATABASE_UNAVAILABLE
from eventstore.store import ConcurrencyConflict, Metadata
from scim.errors import ScimError, ScimType, invalid_syntax, invalid_value

log = logging.getLogger("scimledger.http")
access = logging.getLogger("scimledger.access")

SCIM_MEDIA_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
# What nginx records when the client closes the connection before the response: no response is sent.
_CLIENT_CLOSED_REQUEST = 499
# The detail of every 500: what failed is in the log, not in the answer.
_FAILED = "The service failed to handle this request; it has been logged."
_REQUEST_ID = re.compile(r"^[\w.:@/-]{1,128}$")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class ScimResponse(Response):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def list_response(total: int, start_index: int, resources: list[dict[str, Any]]) -> ScimResponse:
    """An RFC 7644 §3.4.2 ListResponse; the counts are integers, as Okta's connection test checks."""
    return ScimResponse(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


def error_response(
    status: int, detail: str, scim_type: ScimType | None = None, headers: dict[str, str] | None = None
) -> ScimResponse:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    return ScimResponse(body, status_code=status, headers=headers)


class Unauthorized(ScimError):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail)


async def on_scim_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ScimError)
    headers = {"WWW-Authenticate": 'Bearer realm="scimledger"'} if error.status == 401 else {}
    return error_response(error.status, error.detail, error.scim_type, {**headers, **error.headers})


class ErrorAnswer(NamedTuple):
    """How the HTTP edge answers one kind of refusal. `detail`: the SCIM detail, where `{error}` stands for
    the error's own message (written for an admin, as every refusal's is)."""

    status: int
    scim_type: ScimType | None
    detail: str = "{error}"


# What each refusal means over HTTP, looked up by the error's MRO (as Starlette looks up its handlers), so a
# subclass answers as its nearest listed ancestor. DomainError's own row answers a DomainError raised as it
# is, a refusal whose message says why; a subclass of it needs a row of its own (or a listed ancestor other
# than DomainError): tests/unit/test_error_table.py checks that each has one, and one that slips through is
# logged and answered 500, never passed off as the client's mistake.
DOMAIN_ERROR_ANSWERS: Mapping[type[Exception], ErrorAnswer] = {
    NotFound: ErrorAnswer(404, None),
    UserDeletedError: ErrorAnswer(404, None),
    UserNameTaken: ErrorAnswer(409, "uniqueness"),
    NameTaken: ErrorAnswer(409, "uniqueness"),
    InvalidMember: ErrorAnswer(400, "invalidValue"),
    InactiveMember: ErrorAnswer(400, "invalidValue"),
    ConcurrencyConflict: ErrorAnswer(
        409, None, "The resource was changed by another request at the same time; try again."
    ),
    PreconditionFailed: ErrorAnswer(412, None, "The resource changed since the version in If-Match. {error}"),
    ArchivedError: ErrorAnswer(400, "invalidValue"),
    IncompatibleRedeclaration: ErrorAnswer(400, "invalidValue"),
    OrgNameTaken: ErrorAnswer(400, "invalidValue"),
    DomainError: ErrorAnswer(400, "invalidValue"),
}


def answer_for(error_type: type[Exception]) -> ErrorAnswer | None:
    """The row of the nearest class in `error_type`'s MRO that has one; None for a subclass of DomainError
    that reaches DomainError's row without one of its own (see DOMAIN_ERROR_ANSWERS)."""
    for cls in error_type.__mro__:
        if cls is DomainError and error_type is not DomainError:
            return None
        answer = DOMAIN_ERROR_ANSWERS.get(cls)
        if answer is not None:
            return answer
    return None


async def on_domain_error(request: Request, error: Exception) -> Response:
    answer = answer_for(type(error))
    if answer is None:
        log.error(
            "%s has no row in DOMAIN_ERROR_ANSWERS: %s",
            type(error).__name__,
            error,
            extra={"error_type": type(error).__name__},
        )
        return error_response(500, _FAILED)
    # The detail is the error's message put into the row's template, never formatted itself: an error's
    # message may hold braces (a userName may).
    detail = answer.detail.replace("{error}", str(error))
    return error_response(answer.status, detail, answer.scim_type)


_HTTP_DETAILS = {
    404: "No such endpoint: {path}. The SCIM base URL ends in /scim/v2, e.g. /scim/v2/Users.",
    405: "This method is not supported on this endpoint.",
}


async def on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        detail = _HTTP_DETAILS[404].format(path=received_path(request.scope))
    else:
        detail = _HTTP_DETAILS.get(error.status_code, str(error.detail))
    return error_response(error.status_code, detail, headers=dict(error.headers or {}))


async def on_database_unavailable(request: Request, error: Exception) -> Response:
    log.warning("database unavailable: %s", type(error).__name__, extra={"error_type": type(error).__name__})
    return error_response(
        503,
        "The service's database is unavailable or too slow right now; nothing was changed. Retry in a few seconds.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def on_query_canceled(request: Request, error: Exception) -> Response:
    """PostgreSQL stopped a statement: for running past the statement timeout, that is the request's cost, not
    the database's health, and it is said so.

    A search with a filter gets 400 `tooMany`, which RFC 7644 §3.12 gives to a filter that "yields many more
    results than the server is willing to calculate or process": the client chose that cost, and repeating
    the same search would fail the same way. Anything else (a write, a read by id) costs what the service
    chose, so it went over because the database is busy: a 503 with Retry-After, as when it is unavailable.
    """
    if "statement timeout" not in str(error):
        return await on_database_unavailable(request, error)  # cancelled by an operator, or shutting down
    limit = f"{services_of(request).settings.statement_timeout_seconds:g} seconds"
    setting = "setting SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS"
    log.warning("statement timeout", extra={"error_type": type(error).__name__})
    if request.method in ("GET", "HEAD") and request.query_params.get("filter"):
        return error_response(
            400,
            f"This search took longer than the {limit} this service allows one query ({setting}) and was "
            "stopped. Narrow the filter: fewer comparisons, 'eq' rather than 'co' or 'ew', or attributes "
            "such as userName or externalId.",
            "tooMany",
        )
    return error_response(
        503,
        f"This request's query took longer than the {limit} this service allows one query ({setting}) and "
        "was stopped; nothing was changed. The database is busier than usual: retry after the time in "
        "Retry-After.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


# Anything else reaches EdgeMiddleware, which answers a SCIM 500.
EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Any]] = {
    ScimError: on_scim_error,
    **dict.fromkeys(DOMAIN_ERROR_ANSWERS, on_domain_error),
    HTTPException: on_http_exception,
    **dict.fromkeys(DATABASE_UNAVAILABLE, on_database_unavailable),
    asyncpg.QueryCanceledError: on_query_canceled,
}


# Headers that keep browsers from treating any response as anything but data. `serve` gives them to uvicorn
# as its default headers rather than adding them here, because uvicorn answers requests it cannot parse as
# HTTP itself, without the app, and those answers must carry them too.
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
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


def _normalize_path(scope: Scope, endpoints: Mapping[str, str]) -> None:
    """Route `/scim/v2//Users`, `/scim/v2/Users//ID` and `/scim/v2/Users/` as the path without the extra
    slashes, as many proxies and servers do: Okta admins paste a base URL that ends in a slash and Okta
    appends "/Users" to it. An empty segment names nothing here, so no other resource is reached this way.

    `endpoints` maps each SCIM endpoint's path, lowercased, to its own spelling (`/scim/v2/users` →
    `/scim/v2/Users`): a client that spells an endpoint in another case (Microsoft's reference tests request
    `/users`) reaches it. Only the base and the endpoint's name are matched so; an id after them is not."""
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
    segments = normalized.split("/", _MOST_SEGMENTS + 1)
    for count in range(_MOST_SEGMENTS, _ENDPOINT_SEGMENTS - 1, -1):
        head = "/".join(segments[: count + 1])
        canonical = endpoints.get(head.lower())
        if canonical is not None:
            normalized = canonical + normalized[len(head) :]
            break
    if normalized != path:
        scope[_RECEIVED_PATH] = path
        scope["path"] = normalized


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
    redacted); and a SCIM 500 for anything unhandled."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Mapping[str, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints
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
                request_id = candidate if _REQUEST_ID.match(candidate) else None
                break
        request_id = request_id or f"{self._id_prefix}{next(self._id_counter):016x}"
        _normalize_path(scope, self.endpoints)
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
                response = error_response(500, _FAILED)
                await response(scope, receive, send_with_headers)
        finally:
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


class Endpoint(HTTPEndpoint):
    """Starlette's HTTPEndpoint, with the work that depends only on the class done once per class rather than
    on every request: which methods it answers (HTTPEndpoint lists them in __init__) and whether its handlers
    are coroutines (HTTPEndpoint inspects each one as it dispatches; here they all are). Together these were
    a tenth of a GET's time in the app."""

    _methods: ClassVar[list[str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("get", "post", "put", "patch", "delete"):
            handler = getattr(cls, name, None)
            assert handler is None or inspect.iscoroutinefunction(handler), (
                f"{cls.__name__}.{name} must be async"
            )
        probe = object.__new__(cls)
        HTTPEndpoint.__init__(probe, {"type": "http"}, _never, _never)
        cls._methods = probe._allowed_methods

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self._allowed_methods = self._methods

    async def dispatch(self) -> None:
        request = Request(self.scope, receive=self.receive, send=self.send)
        method = request.method
        handler: Callable[[Request], Awaitable[Response]] = (
            getattr(self, "get" if method == "HEAD" else method.lower())
            if method in self._allowed_methods
            else self.method_not_allowed
        )
        response = await handler(request)
        await response(self.scope, self.receive, self.send)


async def _never(*args: Any) -> Any:
    raise AssertionError("only the class's methods are read")


def services_of(request: Request) -> Services:
    # Straight from the scope: `request.state` costs a property and a __getattr__ per call, several per request.
    services: Services = request.scope["state"]["services"]
    return services


# Said to the identity provider's admin, who has neither the app's console nor its CLI: who does.
_ASK_FOR_A_TOKEN = (
    "Ask the app's administrator for a new SCIM token (they issue one in the app's admin console or with "
    "its command-line tool) and paste it into your identity provider's SCIM settings."
)


# Straight quotes, and the curly ones a word processor or a chat client puts around what it is given.
_QUOTES = "\"'\u201c\u201d\u2018\u2019"


def _token_of(header: str) -> str:
    """The token in an Authorization header, or Unauthorized saying what is wrong with the header in terms
    of what the admin pasted into their identity provider's token field."""
    # Header bytes reach us as Latin-1; read them as the UTF-8 an admin's paste sends, curly quotes included.
    with contextlib.suppress(UnicodeError):
        header = header.encode("latin-1").decode("utf-8")
    kind, _, token = header.strip().partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    # Refused even when the rest is a valid token: the admin's setting is wrong, and one edit fixes it for
    # good, whereas accepting it would leave a configuration that fails behind any stricter proxy, and would
    # make this service read a header differently from RFC 6750, which allows one scheme and one token.
    first, _, rest = token.partition(" ")
    if first.lower() == "bearer":
        raise Unauthorized(
            "The Authorization header says 'Bearer' twice ('Bearer Bearer <token>'): the token field in your "
            "identity provider already adds 'Bearer ', and the token was pasted with it. Paste the token "
            "alone, without 'Bearer '; nothing else needs to change."
            if rest.strip()
            else "The Authorization header is 'Bearer Bearer' with no token after it: paste the token itself "
            "into your identity provider's token field, without 'Bearer '."
        )
    if len(token) > 1 and token[0] in _QUOTES and token[-1] in _QUOTES:
        raise Unauthorized(
            "The token is wrapped in quotation marks: paste it into your identity provider's token field "
            "without them."
        )
    if any(character.isspace() for character in token):
        raise Unauthorized(
            "The token contains a space or a line break, which tokens never do: it was probably pasted with "
            "other text or split across lines. Paste the token alone, in one piece."
        )
    return token


async def authenticate(request: Request, scope: TokenScope | None = "scim") -> Principal:
    """The principal of the request's bearer token, which must have `scope` (any scope, with None)."""
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        # Which one would count is a proxy's guess or ours: neither is the client's intent.
        raise Unauthorized(f"The request has {len(headers)} Authorization headers; send exactly one.")
    header = headers[0] if headers else None
    if not header:
        raise Unauthorized("The request has no Authorization header: send 'Authorization: Bearer <token>'.")
    principal = await services_of(request).authenticator.authenticate(_token_of(header))
    if principal is None:
        raise Unauthorized(f"The bearer token is unknown or has been revoked. {_ASK_FOR_A_TOKEN}")
    if scope is not None and principal.scope != scope:
        raise ScimError(403, f"This token has the '{principal.scope}' scope; this endpoint needs '{scope}'.")
    wait = services_of(request).rate_limiter.retry_after(principal.token_id)
    if wait is not None:
        raise ScimError(
            429,
            "This token sent more requests than its rate limit allows; retry after the time in Retry-After.",
            headers={"Retry-After": str(wait)},
        )
    services_of(request).admission.enter(request.scope, principal.org_id, principal.token_id)
    return principal


def metadata(request: Request, principal: Principal) -> Metadata:
    return Metadata(actor=principal.actor, request_id=request.state.request_id)


# Bodies over this size are decoded, validated and applied in a worker thread. That work is linear in the
# body, yet a body near the 1 MiB limit is a few hundred milliseconds of Python, which on the event loop would
# hold every other request, of every tenant, as long; a thread hands the GIL back every few milliseconds.
# Smaller bodies stay on the loop, where a thread's round trip would cost more than it saves.
OFFLOAD_BYTES = 64 * 1024
_LARGE_BODY = "scimledger.large_body"


def large_body(request: Request) -> bool:
    """Whether `read_json` found the body large enough to be worked on off the event loop."""
    # On the scope itself, which is the request's own: its "state" may be shared by every request.
    return bool(request.scope.get(_LARGE_BODY))


async def off_loop(request: Request, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, in a worker thread when the request's body is large (see OFFLOAD_BYTES)."""
    if large_body(request):
        return await run_in_threadpool(function, *args)
    return function(*args)


async def read_json(request: Request) -> Any:
    """The request body as JSON, refusing bodies over the configured limit.

    The Content-Type is not checked: clients send application/scim+json, application/json, nothing at all,
    or a tool's default; what matters is whether the body is JSON, and a clear 400 says when it is not.
    """
    limit = services_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if len(body) > OFFLOAD_BYTES:
        request.scope[_LARGE_BODY] = True
        return await run_in_threadpool(_decode_json, body)
    return _decode_json(body)


def _decode_json(body: bytes) -> Any:
    if not body.strip():
        raise invalid_syntax("The request body is empty; a JSON object was expected.")
    try:
        decoded = _decoder.decode(body)
    except msgspec.DecodeError as error:
        raise invalid_syntax(f"The request body is not valid JSON: {error}.") from error
    except RecursionError as error:
        raise invalid_syntax("The request body is nested too deeply.") from error
    # JSON can only carry U+0000 escaped, so a body without the escape needs no walk.
    if b"\\u0000" in body:
        _refuse_nul(decoded)
    return decoded


def _refuse_nul(document: Any) -> None:
    """PostgreSQL cannot store U+0000 in text or jsonb; refuse it here rather than fail at the database.

    Iterative, so that a body nested as deeply as the decoder allows cannot exhaust the stack here.
    """
    pending: list[tuple[Any, str]] = [(document, "$")]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise invalid_value(
                    f"The value at {where} contains a NUL character (U+0000), which is not allowed."
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append((key, where))
                pending.append((item, f"{where}.{key}"))
        elif isinstance(value, list):
            pending.extend((item, f"{where}[{index}]") for index, item in enumerate(value))


def _too_large(limit: int) -> ScimError:
    return ScimError(413, f"The request body is larger than the {limit}-byte limit.")


def decode_as(value: Any, type_: type[msgspec.Struct], what: str) -> Any:
    """`value`, a SCIM message (a PatchOp, a SearchRequest), as the msgspec Struct `type_`. Its member names
    are matched ignoring case, as SCIM's attribute names are (RFC 7643 §2.1): `{"FILTER": …}` filters."""
    if isinstance(value, dict):
        spellings = _member_spellings(type_)
        value = {
            spellings.get(key.lower(), key) if isinstance(key, str) else key: item
            for key, item in value.items()
        }
    try:
        return msgspec.convert(value, type_, strict=False)
    except msgspec.ValidationError as error:
        raise ScimError(400, f"The {what} is malformed: {error}.", "invalidSyntax") from error


@functools.cache
def _member_spellings(type_: type[msgspec.Struct]) -> dict[str, str]:
    return {field.encode_name.lower(): field.encode_name for field in msgspec.structs.fields(type_)}


def parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as error:
        raise NotFound(f"No resource with id '{text}'.") from error


def etag(version: int) -> str:
    return f'W/"{version}"'


def if_match(request: Request) -> Callable[[int], bool] | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    accepted = {tag.strip() for tag in header.split(",")}
    if "*" in accepted:
        return None
    # Weak comparison (RFC 9110 §8.8.3.2): W/"3" and "3" name the same version.
    versions = {tag.removeprefix("W/") for tag in accepted}
    return lambda version: f'"{version}"' in versions


def base_url(request: Request) -> str:
    configured = services_of(request).settings.public_url
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    server = scope.get("server")
    return _scim_base(
        scope["scheme"],
        request.headers.get("host"),
        tuple(server) if server else None,
        scope.get("app_root_path", scope.get("root_path", "")),
    )


# Building Starlette's URL object for every resource took 7% of a GET's time, and the answer depends only on
# these four values. Host headers are the client's to choose, so the memo stays small.
@functools.lru_cache(maxsize=64)
def _scim_base(scheme: str, host: str | None, server: tuple[str, int] | None, root_path: str) -> str:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": root_path if root_path.endswith("/") else root_path + "/",
        "query_string": b"",
        "headers": [(b"host", host.encode("latin-1"))] if host is not None else [],
    }
    return str(URL(scope=scope)).rstrip("/") + "/scim/v2"
