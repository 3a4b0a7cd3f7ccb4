"""The management API's edge, shared by its routes: who may call (tokens of the `admin` and `platform` scopes,
and which organization each may reach), reading bodies, cursor pagination, and `Idempotency-Key`.

Errors raised here, and every other error under /api/, are answered in the API's one error shape
(app/http/api/responses.py)."""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.http.api.responses import ApiError, JsonResponse
from app.http.auth import check_rate, identify
from app.http.endpoint import parse_uuid, services_of
from app.services import idempotency, tenancy
from app.services.tenancy import PlatformPrincipal, Principal, TokenScope
from eventstore.records import Metadata

ApiPrincipal = Principal | PlatformPrincipal
MANAGEMENT: tuple[TokenScope, ...] = ("admin", "platform")
PLATFORM_ONLY: tuple[TokenScope, ...] = ("platform",)


async def api_principal(request: Request, scopes: Sequence[TokenScope] = MANAGEMENT) -> ApiPrincipal:
    """The request's token, which must have one of `scopes` (403 naming the token's scope otherwise)."""
    principal = await identify(request)
    if principal.scope not in scopes:
        needed = " or ".join(f"'{scope}'" for scope in scopes)
        raise ApiError(403, f"This token has the '{principal.scope}' scope; this endpoint needs {needed}.")
    await check_rate(request, principal.token_id)
    return principal


class OrgAccess(msgspec.Struct, frozen=True):
    """An organization a request may manage, and who is managing it."""

    org_id: uuid.UUID
    principal: ApiPrincipal
    request_id: str | None

    @property
    def metadata(self) -> Metadata:
        return Metadata(actor=self.principal.actor, request_id=self.request_id)


def path_text(request: Request, name: str) -> str:
    """A path parameter that names something: one holding U+0000, which nothing stored can hold (PostgreSQL
    cannot store it), names nothing, and is answered 404 before it reaches the database."""
    value: str = request.path_params[name]
    if "\x00" in value:
        raise ApiError(404, f"No such {name}: it contains a NUL character.")
    return value


def path_id(request: Request, name: str, what: str) -> uuid.UUID:
    """The id in path parameter `name`; text that is no UUID names no `what` of the organization: 404."""
    reference = path_text(request, name)
    try:
        return parse_uuid(reference)
    except ValueError:
        raise ApiError(404, f"No {what} {reference} in this organization.") from None


# Where a request's query parameters are kept once parsed, in its ASGI scope (as the admission's slot is).
_QUERY = "scimledger.query"


def query_values(request: Request) -> dict[str, str]:
    """The request's query parameters by name, a repeated one's last value, as `request.query_params.get`
    reads them; parsed once a request."""
    values: dict[str, str] | None = request.scope.get(_QUERY)
    if values is None:
        values = request.scope[_QUERY] = parse_query(request.scope["query_string"])
    return values


def parse_query(query_string: bytes) -> dict[str, str]:
    """`query_string` read as Starlette reads it (`parse_qsl`, blank values kept, the last value of a name).
    Without an escape (`%`, or `+` for a space) there is nothing to decode, and the pairs are split here:
    Starlette's QueryParams cost the host app's access check 15% of its time, for three ids."""
    text = query_string.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    return {name: value for name, _, value in (pair.partition("=") for pair in text.split("&") if pair)}


def query_text(request: Request, name: str) -> str | None:
    """A query parameter to search by; empty is absent, and U+0000 is refused (400)."""
    value = query_values(request).get(name) or None
    if value is not None and "\x00" in value:
        raise ApiError(400, f"{name} contains a NUL character (U+0000), which is not allowed.")
    return value


async def org_access(request: Request, org_ref: str, scopes: Sequence[TokenScope] = MANAGEMENT) -> OrgAccess:
    """The organization `org_ref` (its id, or its name) names, if the request's token may manage it: a
    platform token any organization, an admin token its own. Another organization's is answered exactly as one
    that does not exist (404, never 403), so that a token cannot learn which organizations exist."""
    principal = await api_principal(request, scopes)
    if "\x00" in org_ref:
        raise tenancy.org_not_found(org_ref.replace("\x00", "\\x00"))
    services = services_of(request)
    if isinstance(principal, PlatformPrincipal) or _names_other_than_id(org_ref, principal.org_id):
        org = await services.orgs.find(org_ref)  # NotFound (404) when there is none
        if isinstance(principal, Principal) and org.org_id != principal.org_id:
            raise tenancy.org_not_found(org_ref)
        org_id = org.org_id
    else:
        org_id = principal.org_id  # the admin's own organization by its id: nothing to look up
    # Counted against the organization managed, so that one platform token working on many organizations
    # takes each one's share, as their own tokens would.
    services.admission.enter(request.scope, org_id, principal.token_id)
    return OrgAccess(org_id, principal, request.scope["state"].get("request_id"))


def _names_other_than_id(org_ref: str, org_id: uuid.UUID) -> bool:
    try:
        return parse_uuid(org_ref) != org_id
    except ValueError:
        return True  # a name: looked up


def platform_admission(request: Request, principal: ApiPrincipal) -> None:
    """Count a request about no organization (creating one) against the token alone."""
    services_of(request).admission.enter(request.scope, principal.token_id, principal.token_id)


# --- bodies


async def read_body(request: Request) -> bytes:
    """The request's body, refused over SCIMLEDGER_MAX_BODY_BYTES (413)."""
    limit = services_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"The request body is larger than the {limit}-byte limit.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"The request body is larger than the {limit}-byte limit.")
    return body


Body = TypeVar("Body", bound=msgspec.Struct)


@functools.cache
def _decoder(type_: type[Body]) -> msgspec.json.Decoder[Body]:
    return msgspec.json.Decoder(type_)


def decode_body(body: bytes, type_: type[Body]) -> Body:
    """`body` as `type_`: 400 when it is not JSON, 422 when it is JSON of the wrong shape."""
    if not body.strip():
        raise ApiError(400, "The request body is empty; a JSON object was expected.")
    if b"\\u0000" in body:  # JSON carries U+0000 only escaped; PostgreSQL cannot store it in text
        raise ApiError(400, "The request body contains a NUL character (U+0000), which is not allowed.")
    try:
        decoded: Body = _decoder(type_).decode(body)
        return decoded
    except msgspec.ValidationError as error:
        raise ApiError(422, f"The request body is not valid: {error}.") from error
    except msgspec.DecodeError as error:
        raise ApiError(400, f"The request body is not valid JSON: {error}.") from error


# --- pagination

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
Key = TypeVar("Key", bound=msgspec.Struct)
Item = TypeVar("Item")


class _Cursor(msgspec.Struct, frozen=True):
    """What a cursor holds: which listing it belongs to, and the key of the last item it gave."""

    listing: str
    key: msgspec.Raw


def page_limit(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}; it was '{text}'.")
    return int(text)


def page_after(request: Request, listing: str, key_type: type[Key]) -> Key | None:
    """The key the request's `cursor` continues after, None for the first page; 400 for a cursor this listing
    did not give (made up, altered, or another listing's)."""
    text = request.query_params.get("cursor")
    if not text:
        return None
    refusal = ApiError(
        400, "cursor is not one this list gave: pass the previous page's next_cursor unchanged."
    )
    try:
        cursor = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), type=_Cursor)
        key = msgspec.json.decode(cursor.key, type=key_type)
    except (ValueError, binascii.Error, msgspec.DecodeError) as error:
        raise refusal from error
    if cursor.listing != listing or not _storable(key):
        raise refusal
    return key


# The range of PostgreSQL's bigint, which every whole number of a listing's key is compared with.
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


def _storable(key: msgspec.Struct) -> bool:
    """Whether every value of `key` can be sent to PostgreSQL. A key this API gave always can; an altered one
    may hold a number past bigint or a U+0000, which the driver or the server would fail on (a 500). Checked
    here, once for every listing, rather than on each route's key type."""
    for value in msgspec.structs.astuple(key):
        if isinstance(value, int) and not _BIGINT_MIN <= value <= _BIGINT_MAX:
            return False
        if isinstance(value, str) and "\x00" in value:
            return False
        if isinstance(value, datetime.datetime):
            # Year 1 at +14:00 is year 0 in UTC, which PostgreSQL's timestamptz cannot hold.
            try:
                value.astimezone(datetime.UTC)
            except OverflowError:
                return False
    return True


def encode_cursor(listing: str, key: msgspec.Struct) -> str:
    raw = msgspec.json.encode(_Cursor(listing, msgspec.Raw(msgspec.json.encode(key))))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Page(msgspec.Struct, frozen=True):
    data: list[Any]
    next_cursor: str | None


def page(
    items: Sequence[Item],
    limit: int,
    listing: str,
    key_of: Callable[[Item], msgspec.Struct],
    shown: Callable[[Item], Any],
) -> JsonResponse:
    """One page of a listing whose query asked for `limit + 1` items: the extra one, when it came, says that
    another page follows."""
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(listing, key_of(items[-1])) if more and items else None
    return JsonResponse(Page([shown(item) for item in items], next_cursor))


# --- idempotency

MAX_KEY_LENGTH = 255


# The header of a replay whose first response held a secret (a bearer token, a signing secret): it names the
# field, null in the replay, since the secret was shown once and is kept nowhere in clear.
SECRET_WITHHELD = "Idempotent-Secret-Withheld"


async def idempotent(
    request: Request,
    principal: ApiPrincipal,
    handle: Callable[[bytes], Awaitable[Response]],
    secret: str | None = None,
) -> Response:
    """`handle(body)`, honouring the request's Idempotency-Key (app/services/idempotency.py): a retry with the
    same key and the same request gets the first response again, marked `Idempotent-Replayed: true`; the same
    key with another request is refused (422); one still running, 409.

    `secret` names the top-level field of the response that holds a secret shown once. It is recorded null,
    so that the idempotency keys (kept 24 hours, in clear) hold no secret that is otherwise stored only
    hashed or encrypted; its replay says so in SECRET_WITHHELD, and the client can still learn what was made
    (a token's id, to revoke it)."""
    body = await read_body(request)
    key = request.headers.get("idempotency-key")
    if key is None:
        return await handle(body)
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ApiError(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters long.")
    pool = services_of(request).pool
    hashed = idempotency.request_hash(request.method, request.url.path, body)
    async with pool.acquire() as connection:
        claimed = await idempotency.claim(connection, principal.token_id, key, hashed)
    if isinstance(claimed, idempotency.Recorded):
        headers = {"Idempotent-Replayed": "true"}
        if secret is not None and _withheld(claimed.body, secret):
            headers[SECRET_WITHHELD] = secret
        return JsonResponse(claimed.body, status_code=claimed.status, headers=headers)
    if isinstance(claimed, idempotency.Mismatch):
        raise ApiError(
            422,
            "This Idempotency-Key was already used with a different request (method, path or body) in the "
            "last 24 hours; use a new key for a new request.",
        )
    if isinstance(claimed, idempotency.InProgress):
        raise ApiError(409, "A request with this Idempotency-Key is still in progress; retry it shortly.")
    try:
        response = await handle(body)
    except BaseException:
        async with pool.acquire() as connection:
            await idempotency.release(connection, principal.token_id, key)
        raise
    recorded = bytes(response.body)
    if secret is not None:
        recorded = _without(recorded, secret)
    async with pool.acquire() as connection:
        await idempotency.record(connection, principal.token_id, key, response.status_code, recorded)
    return response


def _without(body: bytes, field: str) -> bytes:
    """`body` with its `field` null, when it is a JSON object holding it (an answer that made no secret, such
    as an error, is kept as it is)."""
    document = msgspec.json.decode(body) if body else None
    if not isinstance(document, dict) or document.get(field) is None:
        return body
    return msgspec.json.encode({**document, field: None})


def _withheld(body: bytes, field: str) -> bool:
    document = msgspec.json.decode(body) if body else None
    return isinstance(document, dict) and field in document and document[field] is None
