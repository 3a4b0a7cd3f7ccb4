"""Reading a request: its JSON body under the size limit (off the event loop when large), SCIM messages as
msgspec Structs, ids in paths, and versions as ETags and If-Match."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.http.endpoint import services_of
from domain.errors import NotFound
from scim.errors import ScimError, invalid_syntax, invalid_value
from scim.patch_request import PatchOperation, PatchRequest, parse_operations

_decoder = msgspec.json.Decoder()


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


def patch_operations(body: Any) -> list[PatchOperation]:
    patch_request: PatchRequest = decode_as(body, PatchRequest, "PatchOp request")
    return parse_operations(patch_request)
