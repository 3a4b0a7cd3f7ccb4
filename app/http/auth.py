"""Who is asking: the request's bearer token, read as an identity provider's admin pasted it, its scope, its
rate limit, its organization's admission, and its organization's User type."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from app.http.call_errors import remember_principal
from app.http.endpoint import services_of
from app.services.tenancy import PlatformPrincipal, Principal, TokenScope
from eventstore.records import Metadata
from scim.errors import ScimError
from scim.resource_type import ResourceType


class Unauthorized(ScimError):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail)


# Said to the identity provider's admin, who has neither the app's console nor its CLI: who does.
_ASK_FOR_A_TOKEN = (
    "Ask the app's administrator for a new SCIM token (they issue one in the app's admin console or with "
    "its command-line tool) and paste it into your identity provider's SCIM settings."
)


# What str.isspace calls whitespace (the same Unicode table), found in C rather than a character at a time in
# Python, which cost 3% of the access check.
_WHITESPACE = re.compile(r"\s")

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
    if _WHITESPACE.search(token):
        raise Unauthorized(
            "The token contains a space or a line break, which tokens never do: it was probably pasted with "
            "other text or split across lines. Paste the token alone, in one piece."
        )
    return token


async def identify(request: Request) -> Principal | PlatformPrincipal:
    """Whose the request's bearer token is, whatever its scope; Unauthorized without a known one."""
    # Read from the raw headers (lowercase names, as ASGI gives them) rather than through a Headers object.
    headers = [
        value.decode("latin-1") for name, value in request.scope["headers"] if name == b"authorization"
    ]
    if len(headers) > 1:
        # Which one would count is a proxy's guess or ours: neither is the client's intent.
        raise Unauthorized(f"The request has {len(headers)} Authorization headers; send exactly one.")
    header = headers[0] if headers else None
    if not header:
        raise Unauthorized("The request has no Authorization header: send 'Authorization: Bearer <token>'.")
    principal = await services_of(request).authenticator.authenticate(_token_of(header))
    if principal is None:
        raise Unauthorized(f"The bearer token is unknown or has been revoked. {_ASK_FOR_A_TOKEN}")
    return principal


async def check_rate(request: Request, token_id: uuid.UUID) -> None:
    """Refuse the request (429) if its token is over its rate limit."""
    wait = await services_of(request).rate_limiter.retry_after(token_id)
    if wait is not None:
        raise ScimError(
            429,
            "This token sent more requests than its rate limit allows; retry after the time in Retry-After.",
            headers={"Retry-After": str(wait)},
        )


async def authenticate(request: Request, scope: TokenScope | None = "scim") -> Principal:
    """The principal of the request's bearer token, which must be an organization's and have `scope` (any
    scope, with None)."""
    principal = await identify(request)
    if isinstance(principal, PlatformPrincipal):
        needed = f"'{scope}'" if scope else "an organization's token"
        raise ScimError(
            403,
            "This token has the 'platform' scope, which belongs to no organization; this endpoint needs "
            f"{needed}.",
        )
    if scope is not None and principal.scope != scope:
        raise ScimError(403, f"This token has the '{principal.scope}' scope; this endpoint needs '{scope}'.")
    # From here on, an error of this request is its organization's to see (app/http/call_errors.py).
    remember_principal(request.scope, principal)
    await check_rate(request, principal.token_id)
    services_of(request).admission.enter(request.scope, principal.org_id, principal.token_id)
    return principal


def metadata(request: Request, principal: Principal) -> Metadata:
    return Metadata(actor=principal.actor, request_id=request.state.request_id)


async def user_type(
    request: Request, principal: Principal, named: Iterable[tuple[str, Any]] = ()
) -> ResourceType:
    """The User resource type of the principal's organization (see UserTypes.knowing for `named`)."""
    return await services_of(request).user_types.knowing(principal.org_id, principal.schema_version, named)
