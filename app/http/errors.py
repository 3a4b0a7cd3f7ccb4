"""How the HTTP edge answers what goes wrong: SCIM errors as they are, the domain's refusals by one table
looked up by MRO, Starlette's own 404 and 405, and a database that is unavailable or too slow."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.http.api.responses import ApiError, api_error_response, is_api
from app.http.call_errors import note_failed_call
from app.http.console.pages import console_problem, is_console
from app.http.console.session import CONSOLE_EXCEPTION_HANDLERS
from app.http.endpoint import services_of
from app.http.middleware import received_path
from app.http.operations import RETRY_AFTER_SECONDS
from app.http.responses import FAILED_DETAIL, error_response
from app.services.read_replica import ReplicaBehind
from domain.errors import (
    ArchivedError,
    DomainError,
    InactiveMember,
    IncompatibleRedeclaration,
    InvalidFeedRequest,
    InvalidMember,
    InvalidWebhook,
    LinkRefused,
    LogNotIntact,
    ManagedByIdentityProvider,
    NameTaken,
    NotErasable,
    NotFound,
    OrgNameTaken,
    PersonalDataKeyMissing,
    PreconditionFailed,
    SigningKeyMissing,
    TooManyTokens,
    UserDeletedError,
    UserNameTaken,
    WebhookKeyMissing,
)
from eventstore.pool import DATABASE_UNAVAILABLE, CommitOutcomeUnknown
from eventstore.store import ConcurrencyConflict
from scim.errors import ScimError, ScimType

log = logging.getLogger("scimledger.http")


def _answer(
    request: Request,
    status: int,
    detail: str,
    scim_type: ScimType | None = None,
    headers: dict[str, str] | None = None,
    error: Exception | None = None,
) -> Response:
    """The error as SCIM's error body, in the management API's shape for a request under /api/, or as the
    console's page for one under /console. A SCIM error answered to an organization's identity provider is
    kept for its connection status (`error`, the exception answered, may name whom the request was about)."""
    if is_console(request.scope):
        return console_problem(request, status, detail, headers)
    if is_api(request.scope):
        return api_error_response(request.scope, status, detail, headers)
    note_failed_call(request, status, detail, scim_type, error)
    return error_response(status, detail, scim_type, headers)


async def on_api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    headers = {"WWW-Authenticate": 'Bearer realm="scimledger"'} if error.status == 401 else {}
    return _answer(request, error.status, error.message, headers={**headers, **error.headers})


async def on_scim_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ScimError)
    headers = {"WWW-Authenticate": 'Bearer realm="scimledger"'} if error.status == 401 else {}
    return _answer(request, error.status, error.detail, error.scim_type, {**headers, **error.headers}, error)


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
    # The person is still a member, or was erased already, or the reason would keep their data.
    NotErasable: ErrorAnswer(409, None),
    NameTaken: ErrorAnswer(409, "uniqueness"),
    InvalidMember: ErrorAnswer(400, "invalidValue"),
    InactiveMember: ErrorAnswer(400, "invalidValue"),
    ConcurrencyConflict: ErrorAnswer(
        409, None, "The resource was changed by another request at the same time; try again."
    ),
    PreconditionFailed: ErrorAnswer(412, None, "The resource changed since the version in If-Match. {error}"),
    ArchivedError: ErrorAnswer(400, "invalidValue"),
    IncompatibleRedeclaration: ErrorAnswer(400, "invalidValue"),
    OrgNameTaken: ErrorAnswer(409, "uniqueness"),
    TooManyTokens: ErrorAnswer(409, None),
    ManagedByIdentityProvider: ErrorAnswer(409, None),
    InvalidFeedRequest: ErrorAnswer(400, "invalidValue"),
    InvalidWebhook: ErrorAnswer(400, "invalidValue"),
    # Answered by the sign-in page itself (app/http/console/sign_in_routes.py), 410 or 404 by `gone`.
    LinkRefused: ErrorAnswer(404, None),
    # The service's own configuration: nothing the caller can change, and nothing was saved.
    WebhookKeyMissing: ErrorAnswer(503, None),
    SigningKeyMissing: ErrorAnswer(503, None),
    PersonalDataKeyMissing: ErrorAnswer(503, None),
    # The log's seal chain is broken: no evidence is signed over it until an operator has looked (audit verify).
    LogNotIntact: ErrorAnswer(409, None),
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
        return _answer(request, 500, FAILED_DETAIL, error=error)
    # The detail is the error's message put into the row's template, never formatted itself: an error's
    # message may hold braces (a userName may).
    detail = answer.detail.replace("{error}", str(error))
    return _answer(request, answer.status, detail, answer.scim_type, error=error)


# An unknown path under /api/.
_API_NOT_FOUND = (
    "No such endpoint: {path}. The management API's routes start with /api/v1; /openapi.json lists them."
)
_CONSOLE_NOT_FOUND = "There is no such page in the console ({path})."
_HTTP_DETAILS = {
    404: "No such endpoint: {path}. The SCIM base URL ends in /scim/v2, e.g. /scim/v2/Users.",
    405: "This method is not supported on this endpoint.",
}


async def on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        shape = (
            _API_NOT_FOUND
            if is_api(request.scope)
            else _CONSOLE_NOT_FOUND
            if is_console(request.scope)
            else _HTTP_DETAILS[404]
        )
        detail = shape.format(path=received_path(request.scope))
    else:
        detail = _HTTP_DETAILS.get(error.status_code, str(error.detail))
    return _answer(request, error.status_code, detail, headers=dict(error.headers or {}))


async def on_database_unavailable(request: Request, error: Exception) -> Response:
    log.warning("database unavailable: %s", type(error).__name__, extra={"error_type": type(error).__name__})
    return _answer(
        request,
        503,
        "The service's database is unavailable or too slow right now; nothing was changed. Retry in a few seconds.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def on_commit_outcome_unknown(request: Request, error: Exception) -> Response:
    """The database went away (a failover, most likely) as this request's change was committing: it may
    have been saved. Unlike any other 503, this one must not say that nothing was changed."""
    if request.method in ("GET", "HEAD"):
        return await on_database_unavailable(request, error)
    log.warning("commit outcome unknown", extra={"error_type": type(error.__cause__ or error).__name__})
    return _answer(
        request,
        503,
        "The service lost its database while this change was being saved, so it may or may not have been "
        "saved. Read the resource back before retrying (a user that was created answers 409 to a second "
        "POST). Retry in a few seconds.",
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
        return _answer(
            request,
            400,
            f"This search took longer than the {limit} this service allows one query ({setting}) and was "
            "stopped. Narrow the filter: fewer comparisons, 'eq' rather than 'co' or 'ew', or attributes "
            "such as userName or externalId.",
            "tooMany",
        )
    return _answer(
        request,
        503,
        f"This request's query took longer than the {limit} this service allows one query ({setting}) and "
        "was stopped; nothing was changed. The database is busier than usual: retry after the time in "
        "Retry-After.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def on_replica_behind(request: Request, error: Exception) -> Response:
    """A fresh read that the replica could not serve in time (app/services/read_replica.py): the detail says
    how far behind it is and how to get the answer it has."""
    log.warning("read replica behind", extra={"error_type": type(error).__name__})
    return _answer(request, 503, str(error), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


# Anything else reaches EdgeMiddleware, which answers a SCIM 500.
EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Any]] = {
    ScimError: on_scim_error,
    ApiError: on_api_error,
    **dict.fromkeys(DOMAIN_ERROR_ANSWERS, on_domain_error),
    HTTPException: on_http_exception,
    **dict.fromkeys(DATABASE_UNAVAILABLE, on_database_unavailable),
    CommitOutcomeUnknown: on_commit_outcome_unknown,
    ReplicaBehind: on_replica_behind,
    asyncpg.QueryCanceledError: on_query_canceled,
    **CONSOLE_EXCEPTION_HANDLERS,
}
