"""The connection status's sentences, as an IT admin reads them (app/services/connection_status.py)."""

from __future__ import annotations

import datetime
import uuid

import pytest

from app.services.connection_status import CallError, describe

TOKEN = uuid.uuid4()
WHEN = datetime.datetime(2026, 12, 2, 9, 30, tzinfo=datetime.UTC)


def error(
    method: str,
    route: str,
    status: int,
    scim_type: str | None = None,
    *,
    label: str | None = "Okta",
    subject: str | None = None,
    kind: str | None = None,
    resource_id: uuid.UUID | None = None,
    members: tuple[str, ...] = (),
) -> CallError:
    return CallError(
        WHEN,
        TOKEN,
        label,
        method,
        route,
        status,
        scim_type,
        "detail",
        "req-1",
        kind,
        subject,
        resource_id,
        members,
    )


ID = uuid.UUID("6a2f0c3e-0000-4000-8000-000000000001")


@pytest.mark.parametrize(
    ("call", "sentence"),
    [
        (
            error("POST", "/scim/v2/Users", 409, "uniqueness", subject="jane@acme.com", kind="user"),
            "Okta tried to create jane@acme.com, but a user with that userName already exists (409 uniqueness).",
        ),
        (
            error("PUT", "/scim/v2/Groups/{id}", 409, "uniqueness", subject="Statsig-A-B", kind="group"),
            "Okta tried to replace the members of group 'Statsig-A-B', but another group already has that name "
            "(409 uniqueness).",
        ),
        (
            error("PATCH", "/scim/v2/Users/{id}", 404, resource_id=ID, kind=None),
            f"Okta tried to change the user with id {ID}, but no such user exists in this organization (404).",
        ),
        (
            error("GET", "/scim/v2/Users", 400, "invalidFilter", label=None),
            "Your identity provider tried to look up users, but its filter could not be used (400 invalidFilter).",
        ),
        (
            error(
                "PATCH",
                "/scim/v2/Groups/{id}",
                400,
                "invalidValue",
                subject="G",
                kind="group",
                members=("x", "y"),
            ),
            "Okta tried to change the members of group 'G', but it named members that are not users of this "
            "organization: x, y (400 invalidValue).",
        ),
        (
            error("DELETE", "/scim/v2/Users/{id}", 503),
            "Okta tried to delete a user, but the service's database was unavailable or too slow; it will retry (503).",
        ),
        (
            error("GET", "/scim/v2/Users/{id}", 418),
            "Okta tried to read a user, but the request was refused (418).",
        ),
        (
            error("GET", "/scim/v2/Elsewhere", 599),
            "Okta tried to call GET /scim/v2/Elsewhere, but the service failed; its log has the details under "
            "the request id (599).",
        ),
    ],
)
def test_each_error_reads_as_a_sentence_naming_whom_it_was_about(call: CallError, sentence: str) -> None:
    assert describe(call) == sentence
