"""The access review, for the auditor: who held which Project × Role at some point in a window, from when to
when, granted and revoked by whom (projections/audit.py `access`, as /audit/access answers), and its
exports. An export is stamped with the seal chain's head read in the same snapshot as its rows, with who
exported it and when: kept beside the head, it shows the rows were read from a log that verifies up to it.

The CSV begins with a header block of rows of one cell starting with `# ` (what it is, the organization, the window and
filters, the seal head, who exported it and when), then the column names, then a row per interval. Cells
that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return) are written
with a leading apostrophe, as OWASP advises for CSV meant for spreadsheets."""

from __future__ import annotations

import csv
import datetime
import io
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.audit_routes import evidence_response
from app.http.console.audit_forms import (
    SECTION,
    BadInput,
    UnknownReference,
    bounded_window,
    check_user_reference,
    field,
    read_snapshot,
    window_fields,
)
from app.http.console.pages import problem_page, render
from app.http.console.session import console_session
from app.http.endpoint import services_of
from app.services.console import ConsoleSession
from eventstore.pool import Connection
from projections import audit, seals

# Rows a page shows; an export holds every row.
PAGE_ROWS = 500
DEFAULT_WINDOW = datetime.timedelta(days=90)
FIELDS = ("from", "to", "project", "role", "user")
COLUMNS = (
    "user_id",
    "userName",
    "group_id",
    "project",
    "role",
    "from",
    "to",
    "granted_by",
    "grant_cause",
    "revoked_by",
    "revoke_cause",
)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Review:
    start: datetime.datetime
    end: datetime.datetime
    filters: dict[str, str | None]
    intervals: list[audit.AccessInterval]
    head: seals.Head | None


async def _review(request: Request, session: ConsoleSession) -> Review:
    """The review the query asks for (BadInput for a field it cannot use), with the head of the same snapshot."""
    params = request.query_params
    start, end = bounded_window(params, DEFAULT_WINDOW)
    filters = {name: field(params, name) for name in ("project", "role", "user")}
    org_id, prefix = session.org_id, services_of(request).settings.group_prefix

    async def query(connection: Connection) -> Review:
        if filters["user"] is not None:
            await check_user_reference(connection, org_id, filters["user"])
        head = await seals.head(connection, org_id)
        intervals = await audit.access(
            connection,
            org_id,
            prefix,
            start,
            end,
            project=filters["project"],
            role=filters["role"],
            user=filters["user"],
        )
        return Review(start, end, filters, intervals, head)

    return await read_snapshot(request, query)


async def review_page(request: Request) -> Response:
    session = await console_session(request, SECTION)
    form = _form(request)
    try:
        review = await _review(request, session)
    except BadInput as error:
        return _page(request, session, form, None, status_code=400, error=str(error))
    except UnknownReference as unknown:
        form[unknown.field] = ""
        return _page(request, session, form, None, status_code=404, error=str(unknown))
    form["from"], form["to"] = window_fields(request.query_params, review.start, review.end)
    return _page(request, session, form, review)


def _form(request: Request) -> dict[str, Any]:
    return {name: request.query_params.get(name, "") for name in FIELDS}


def _page(
    request: Request,
    session: ConsoleSession,
    form: dict[str, Any],
    review: Review | None,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    query = request.url.query
    return render(
        request,
        "audit_review.html",
        session,
        status_code=status_code,
        form=form,
        error=error,
        review=review,
        rows=review.intervals[:PAGE_ROWS] if review else [],
        truncated=review is not None and len(review.intervals) > PAGE_ROWS,
        page_rows=PAGE_ROWS,
        csv_link=f"/console/audit/review.csv?{query}" if query else "/console/audit/review.csv",
        json_link=f"/console/audit/review.json?{query}" if query else "/console/audit/review.json",
        bundle_link=f"/console/audit/review.zip?{query}" if query else "/console/audit/review.zip",
    )


def _stamp(session: ConsoleSession, review: Review) -> dict[str, Any]:
    return {
        "organization": {"id": str(session.org_id), "name": session.org_name},
        "seal_head": str(review.head) if review.head else None,
        "exported_by": session.actor,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "from": review.start.isoformat(),
        "to": review.end.isoformat(),
        "filters": review.filters,
    }


def _filename(review: Review, extension: str) -> str:
    return f"access-review-{review.start:%Y%m%dT%H%M%SZ}-{review.end:%Y%m%dT%H%M%SZ}.{extension}"


def _attachment(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


async def _export(request: Request) -> tuple[ConsoleSession, Review] | Response:
    """The session and the review an export asks for, or the page that says why there is none."""
    session = await console_session(request, SECTION)
    try:
        return session, await _review(request, session)
    except BadInput as error:
        return _page(request, session, _form(request), None, status_code=400, error=str(error))
    except UnknownReference as unknown:
        return problem_page(request, 404, str(unknown), session)


async def review_json(request: Request) -> Response:
    asked = await _export(request)
    if isinstance(asked, Response):
        return asked
    session, review = asked
    body = {**_stamp(session, review), "intervals": [interval.to_row() for interval in review.intervals]}
    return _attachment(_encoder.encode(body), "application/json", _filename(review, "json"))


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


async def review_csv(request: Request) -> Response:
    asked = await _export(request)
    if isinstance(asked, Response):
        return asked
    session, review = asked
    stamp = _stamp(session, review)
    out = io.StringIO()
    header = [
        "scimledger access review",
        f"organization: {stamp['organization']['name']} ({stamp['organization']['id']})",
        f"window: from {stamp['from']} to {stamp['to']}",
        "filters: " + ("; ".join(f"{k}={v}" for k, v in review.filters.items() if v is not None) or "none"),
        f"seal head: {stamp['seal_head'] or 'none (nothing sealed yet)'}",
        f"exported by: {stamp['exported_by']}",
        f"exported at: {stamp['exported_at']}",
    ]
    writer = csv.writer(out)
    for line in header:
        # Each stamp line is one quoted cell starting with "# ", written by the csv module like every row: a
        # comma or a quotation mark in a name or a filter cannot start a cell of its own (and a formula in
        # it), and a line break in a name cannot start a line.
        writer.writerow(["# " + " ".join(line.splitlines())])
    writer.writerow(COLUMNS)
    for interval in review.intervals:
        row = interval.to_row()
        writer.writerow([_cell(row[column]) for column in COLUMNS])
    return _attachment(out.getvalue().encode(), "text/csv; charset=utf-8", _filename(review, "csv"))


async def review_bundle(request: Request) -> Response:
    """The window's evidence bundle (app/services/evidence.py): the review with the events it rests on and
    the seal head, signed by the deployment's key, for someone to check offline with
    `scimledger audit verify-bundle`. The whole organization's, whatever the page's filters."""
    session = await console_session(request, SECTION)
    try:
        start, end = bounded_window(request.query_params, DEFAULT_WINDOW)
    except BadInput as error:
        return _page(request, session, _form(request), None, status_code=400, error=str(error))
    return await evidence_response(request, session.org_id, start, end, session.actor)


ROUTES = [
    Route("/console/audit/review", review_page, methods=["GET"]),
    Route("/console/audit/review.zip", review_bundle, methods=["GET"]),
    Route("/console/audit/review.csv", review_csv, methods=["GET"]),
    Route("/console/audit/review.json", review_json, methods=["GET"]),
]
