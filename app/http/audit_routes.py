"""/audit: the auditors' queries as JSON, for tokens of the auditor scope, which read this and nothing else.

Everything is read from the log, never from projections: a page of history in one repeatable-read snapshot,
the state at an instant by batches of short statements (see projections/audit_state.py). Answers are encoded
and sent a slice at a time once the reading is done, so that neither a large answer nor its encoding is ever
held whole, and the loop serves other requests between slices.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import IO, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.http.auth import authenticate
from app.http.endpoint import parse_uuid, services_of
from app.http.responses import SCIM_MEDIA_TYPE, ScimResponse
from app.services import evidence, tenancy
from app.services.read_replica import ReadView
from app.services.tenancy import Principal, TokenScope
from eventstore.pool import Connection
from projections import audit, audit_history, audit_state, seals
from scim.errors import invalid_value
from scim.instants import parse_instant

AUDITOR: TokenScope = "auditor"


def _instant(request: Request, name: str, required: bool = False) -> datetime.datetime | None:
    text = request.query_params.get(name)
    if not text:
        if required:
            raise invalid_value(f"The '{name}' parameter is required (an ISO 8601 time).")
        return None
    try:
        return parse_instant(text)
    except ValueError as error:
        raise invalid_value(f"'{name}': {error}") from error


def _window(start: datetime.datetime | None, end: datetime.datetime | None, first: str, second: str) -> None:
    problem = audit.window_error(start, end, f"'{first}'", f"'{second}'")
    if problem is not None:
        raise invalid_value(problem)


def _text(request: Request, name: str) -> str | None:
    """A name to filter by: U+0000 is in no name, and PostgreSQL's text cannot even hold it, so it is refused
    rather than sent."""
    text = request.query_params.get(name)
    if text is not None and "\x00" in text:
        raise invalid_value(f"'{name}' cannot contain U+0000 (NUL): no name does.")
    return text


def _id(request: Request, name: str) -> uuid.UUID | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return parse_uuid(text)
    except ValueError as error:
        raise invalid_value(f"'{name}' takes an id, not '{text}'.") from error


_LIMIT = re.compile(r"[0-9]{1,9}")
# Items encoded per slice of a streamed answer: about 50 KB, a millisecond of encoding.
_SLICE = 250
_encoder = msgspec.json.Encoder()


def _limit(request: Request) -> int:
    settings = services_of(request).settings
    text = request.query_params.get("limit")
    if not text:
        return settings.audit_page_size
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= settings.audit_max_page_size:
        raise invalid_value(
            f"'limit' takes a number of events from 1 to {settings.audit_max_page_size}, not '{text[:40]}'."
        )
    return int(text)


def _cursor(request: Request) -> Any:
    text = request.query_params.get("after")
    if not text:
        return None
    try:
        return audit_history.decode_cursor(text)
    except ValueError as error:
        raise invalid_value(
            f"'after' takes the 'next' of a previous page of this history, unchanged; '{text[:40]}' is not one."
        ) from error


def _slices(items: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == _SLICE:
            yield batch
            batch = []
    if batch:
        yield batch


async def _object_in_slices(members: list[tuple[str, Any]]) -> AsyncIterator[bytes]:
    """A JSON object; members that are iterators are encoded as lists, a slice of items at a time."""
    opening = b"{"
    for name, value in members:
        yield opening + _encoder.encode(name) + b":"
        opening = b","
        if not isinstance(value, Iterator):
            yield _encoder.encode(value)
            continue
        separator = b"["
        for batch in _slices(value):
            yield separator + _encoder.encode(batch)[1:-1]
            separator = b","
            await asyncio.sleep(0)  # let other requests in between slices
        yield b"[]" if separator == b"[" else b"]"
    yield b"}"


def _streamed(members: list[tuple[str, Any]], view: ReadView) -> Response:
    return StreamingResponse(_object_in_slices(members), media_type=SCIM_MEDIA_TYPE, headers=view.headers)


async def _auditor(request: Request) -> Principal:
    # Before any parameter is looked at: a caller without the right token learns nothing of the API.
    return await authenticate(request, scope=AUDITOR)


async def _view(request: Request) -> ReadView:
    """Where this request reads (the replica, when there is one) and how fresh that is: what every answer
    states as Data-As-Of. `Cache-Control: no-cache` asks for the state at the request's own time (RFC 9111:
    no stored copy without checking with the origin), which waits for the replica to catch up."""
    fresh = "no-cache" in request.headers.get("cache-control", "").lower()
    return await services_of(request).reads.view(fresh=fresh)


async def _read(request: Request, principal: Principal, query: Any) -> tuple[Any, ReadView]:
    """Run `query(connection, org_id, prefix)` for the auditor's organization in one consistent snapshot;
    returns its answer and the view it was read in."""
    view = await _view(request)
    async with (
        view.pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        return await query(connection, principal.org_id, services_of(request).settings.group_prefix), view


async def verify(request: Request) -> Response:
    principal = await _auditor(request)
    head_text = request.query_params.get("head")
    try:
        expected = seals.Head.parse(head_text) if head_text else None
    except ValueError as error:
        raise invalid_value(str(error)) from error
    limit = datetime.timedelta(seconds=services_of(request).settings.audit_max_unsealed_seconds)
    verdict, view = await _read(
        request,
        principal,
        lambda connection, org_id, _: seals.verify(connection, org_id, expected, max_unsealed_age=limit),
    )
    return ScimResponse(
        {
            "intact": verdict.intact,
            "checked": verdict.checked,
            "unsealed": verdict.unsealed,
            "problem": verdict.problem,
        },
        headers=view.headers,
    )


async def head(request: Request) -> Response:
    principal = await _auditor(request)
    latest, view = await _read(
        request, principal, lambda connection, org_id, _: seals.head(connection, org_id)
    )
    return ScimResponse({"head": str(latest) if latest else None}, headers=view.headers)


async def history(request: Request) -> Response:
    principal = await _auditor(request)
    since, until = _instant(request, "since"), _instant(request, "until")
    _window(since, until, "since", "until")
    wanted = audit_history.HistoryFilter(
        user=_id(request, "user"),
        group=_id(request, "group"),
        actor=_text(request, "actor"),
        since=since,
        until=until,
    )
    limit, after = _limit(request), _cursor(request)

    async def page_and_labels(
        connection: Connection, org_id: uuid.UUID, prefix: str
    ) -> tuple[audit_history.HistoryPage, dict[str, str]]:
        page = await audit_history.history_page(connection, org_id, prefix, wanted, limit, after)
        return page, await tenancy.actor_labels(connection, org_id, {entry.actor for entry in page.entries})

    (page, labels), view = await _read(request, principal, page_and_labels)
    return _streamed(
        [
            ("events", (entry.to_row(labels) for entry in page.entries)),
            ("next", audit_history.encode_cursor(page.next) if page.next else None),
        ],
        view,
    )


async def as_of(request: Request) -> Response:
    principal = await _auditor(request)
    at = _instant(request, "at", required=True)
    assert at is not None
    view = await _view(request)
    prefix = services_of(request).settings.group_prefix
    state = await audit_state.state_at(view.pool, principal.org_id, at, prefix)
    return _streamed(
        [
            ("at", at.isoformat()),
            ("users", state.user_rows()),
            ("groups", state.group_rows()),
            ("memberships", state.membership_rows()),
        ],
        view,
    )


async def access(request: Request) -> Response:
    principal = await _auditor(request)
    start, end = _instant(request, "from", required=True), _instant(request, "to", required=True)
    assert start is not None
    assert end is not None
    _window(start, end, "from", "to")
    project, role, user = (_text(request, name) for name in ("project", "role", "user"))

    async def review(
        connection: Connection, org_id: uuid.UUID, prefix: str
    ) -> tuple[list[audit.AccessInterval], dict[str, str]]:
        intervals = await audit.access(
            connection, org_id, prefix, start, end, project=project, role=role, user=user
        )
        return intervals, await tenancy.actor_labels(connection, org_id, audit.actors_of(intervals))

    (intervals, labels), view = await _read(request, principal, review)
    return _streamed(
        [
            ("from", start.isoformat()),
            ("to", end.isoformat()),
            ("intervals", (interval.to_row(labels) for interval in intervals)),
        ],
        view,
    )


# An export is written to a temporary file first (in memory up to this size), so that a failure half-way (a
# broken chain) is a clean error response rather than a truncated download.
_SPOOL_BYTES = 8 * 1024 * 1024
_CHUNK = 256 * 1024


async def _file_chunks(spooled: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        spooled.seek(0)
        while chunk := spooled.read(_CHUNK):
            yield chunk
    finally:
        spooled.close()


async def export(request: Request) -> Response:
    """The evidence bundle of the auditor's organization for the window (app/services/evidence.py): the
    same file `scimledger audit export` writes, signed by the deployment's key."""
    principal = await _auditor(request)
    start, end = _instant(request, "from", required=True), _instant(request, "to", required=True)
    assert start is not None
    assert end is not None
    _window(start, end, "from", "to")
    return await evidence_response(request, principal.org_id, start, end, principal.actor)


async def evidence_response(
    request: Request, org_id: uuid.UUID, start: datetime.datetime, end: datetime.datetime, actor: str
) -> Response:
    """The organization's evidence bundle for [start, end], exported by `actor`, as a download: what
    `/audit/export` and the console's review answer."""
    services = services_of(request)
    signer = services.audit_signing_key.private_key()
    # Closed by _file_chunks once sent, or below on a failure: it outlives this function.
    view = await _view(request)
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    try:
        async with view.pool.acquire() as connection:
            await evidence.build_bundle(connection, org_id, start, end, actor, signer, spooled)
    except BaseException:
        spooled.close()
        raise
    start_utc, end_utc = start.astimezone(datetime.UTC), end.astimezone(datetime.UTC)
    name = f"evidence-{org_id}-{start_utc:%Y%m%dT%H%M%SZ}-{end_utc:%Y%m%dT%H%M%SZ}.zip"
    return StreamingResponse(
        _file_chunks(spooled),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **view.headers},
    )


ROUTES = [
    Route("/verify", verify, methods=["GET"]),
    Route("/head", head, methods=["GET"]),
    Route("/history", history, methods=["GET"]),
    Route("/as-of", as_of, methods=["GET"]),
    Route("/access", access, methods=["GET"]),
    Route("/export", export, methods=["GET"]),
]
