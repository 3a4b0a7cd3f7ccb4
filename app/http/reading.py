"""Reading a request: its JSON body under the size limit (off the event loop when large), SCIM messages as
msgspec Structs, ids in paths, versions as ETags and If-Match; what a listing asks for, whichever resource it
lists (a GET's query string or a `.search` body, RFC 7644 §3.4.2, §3.4.3, parsed and bounded the same way into
one ListQuery); and the attribute selection of any response (`attributes`, `excludedAttributes`)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.http.call_errors import remember_body
from app.http.endpoint import parse_uuid, services_of
from app.infrastructure.settings import Settings
from domain.errors import NotFound
from scim.errors import ScimError, invalid_syntax, invalid_value
from scim.filter import parse_attr_path, parse_attribute_list
from scim.filter_cost import parse_bounded_filter
from scim.filter_tree import AttrPath
from scim.patch_request import PatchOperation, PatchRequest, parse_operations
from scim.query import SEARCH_REQUEST, ListQuery, SearchRequest

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
        decoded = await run_in_threadpool(_decode_json, body)
    else:
        decoded = _decode_json(body)
    remember_body(request.scope, decoded)  # whom an error of the request is about (app/http/call_errors.py)
    return decoded


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
        return parse_uuid(text)
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


# Far beyond any real page, and within PostgreSQL's bigint for LIMIT and OFFSET.
_LARGEST_INDEX = 2**53


def _integer(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError as error:
        raise invalid_value(f"{name} must be an integer, not '{text}'.") from error


def selection(request: Request) -> tuple[list[AttrPath] | None, list[AttrPath] | None]:
    if not request.scope["query_string"]:
        return None, None  # most requests: no query string to parse
    return _selection(request.query_params)


def _selection(params: Mapping[str, str]) -> tuple[list[AttrPath] | None, list[AttrPath] | None]:
    include = parse_attribute_list(params["attributes"]) if params.get("attributes") else None
    exclude = parse_attribute_list(params["excludedAttributes"]) if params.get("excludedAttributes") else None
    return include, exclude


def list_parameters(request: Request) -> ListQuery:
    # Parsed as Starlette's query_params parses it, into a plain dict: its multidict answers a missing name by
    # raising KeyError inside `get`, and most of the names asked for here are missing from most requests.
    params = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True))
    include, exclude = _selection(params)
    return listing(
        services_of(request).settings,
        filter_text=params.get("filter"),
        start_index=_integer(params, "startIndex"),
        count=_integer(params, "count"),
        sort_by=params.get("sortBy"),
        sort_order=params.get("sortOrder"),
        include=include,
        exclude=exclude,
    )


def search_parameters(request: Request, body: Any) -> ListQuery:
    """A `.search` body (RFC 7644 §3.4.3) as the same ListQuery a GET's query string makes."""
    search: SearchRequest = decode_as(body, SearchRequest, "SearchRequest")
    if SEARCH_REQUEST not in search.schemas:
        raise invalid_syntax(f'A search\'s body must have "schemas": ["{SEARCH_REQUEST}"].')
    return listing(
        services_of(request).settings,
        filter_text=search.filter,
        start_index=search.start_index,
        count=search.count,
        sort_by=search.sort_by,
        sort_order=search.sort_order,
        include=_attribute_names(search.attributes),
        exclude=_attribute_names(search.excluded_attributes),
    )


def _attribute_names(names: list[str] | str | None) -> list[AttrPath] | None:
    if not names:
        return None
    return parse_attribute_list(names if isinstance(names, str) else ",".join(names))


def listing(
    settings: Settings,
    *,
    filter_text: str | None,
    start_index: int | None,
    count: int | None,
    sort_by: str | None,
    sort_order: str | None,
    include: list[AttrPath] | None,
    exclude: list[AttrPath] | None,
) -> ListQuery:
    """What a GET's query string or a `.search` body asks for, parsed and bounded the same way."""
    order = (sort_order or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise invalid_value(f"sortOrder must be 'ascending' or 'descending', not '{sort_order}'.")
    return ListQuery(
        filter=(
            parse_bounded_filter(filter_text, settings.max_filter_terms, settings.max_filter_substring_terms)
            if filter_text
            else None
        ),
        start_index=max(1, _bounded(start_index, 1)),
        count=min(max(0, _bounded(count, settings.default_page_size)), settings.max_page_size),
        sort_by=parse_attr_path(sort_by) if sort_by else None,
        descending=order == "descending",
        include=include,
        exclude=exclude,
    )


def _bounded(value: int | None, default: int) -> int:
    if value is None:
        return default
    return max(-_LARGEST_INDEX, min(value, _LARGEST_INDEX))
