"""The connection status of an organization's identity provider, for its IT admin: when it last called, and
the last errors it got, each in a sentence that names the person or group it was about.

Read by the console's Setup page and by `GET /api/v1/orgs/{org}/connection`. The errors are those the HTTP
edge answered to the organization's SCIM tokens (app/services/scim_call_errors.py writes them); the last call
is the tokens' `last_used_at`, which the token lookup records to the minute (migration 0018).
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from app.services.scim_call_errors import ScimCallErrors

# --- the wording, in one place. A sentence reads "{caller} tried to {action}, but {reason} ({status} {scimType})."

# Who called, when its token has no label.
UNNAMED_CALLER = "Your identity provider"

# What the identity provider tried, by method and route; {subject} is the user or group it named.
ACTIONS: Mapping[tuple[str, str], str] = {
    ("GET", "/scim/v2/Users"): "look up users",
    ("POST", "/scim/v2/Users"): "create {subject}",
    ("GET", "/scim/v2/Users/{id}"): "read {subject}",
    ("PUT", "/scim/v2/Users/{id}"): "update {subject}",
    ("PATCH", "/scim/v2/Users/{id}"): "change {subject}",
    ("DELETE", "/scim/v2/Users/{id}"): "delete {subject}",
    ("POST", "/scim/v2/Users/.search"): "search users",
    ("GET", "/scim/v2/Groups"): "look up groups",
    ("POST", "/scim/v2/Groups"): "create {subject}",
    ("GET", "/scim/v2/Groups/{id}"): "read {subject}",
    ("PUT", "/scim/v2/Groups/{id}"): "replace the members of {subject}",
    ("PATCH", "/scim/v2/Groups/{id}"): "change the members of {subject}",
    ("DELETE", "/scim/v2/Groups/{id}"): "unlink {subject}",
    ("POST", "/scim/v2/Groups/.search"): "search groups",
    ("POST", "/scim/v2/.search"): "search users and groups",
}

# Why it failed, by (status, scimType, what the route is about); the most specific row that matches wins:
# (status, scimType, kind), then (status, scimType, None), then (status, None, None), then the status's class.
REASONS: Mapping[tuple[int, str | None, str | None], str] = {
    (409, "uniqueness", "user"): "a user with that userName already exists",
    (409, "uniqueness", "group"): "another group already has that name",
    (409, None, None): "another request changed it at the same moment",
    (400, "invalidFilter", None): "its filter could not be used",
    (400, "invalidSyntax", None): "the request was not well-formed SCIM",
    (400, "invalidValue", None): "a value it sent was refused",
    (400, "invalidPath", None): "its attribute path could not be used",
    (400, "noTarget", None): "its path matched nothing to change",
    (400, "mutability", None): "it tried to change an attribute that cannot be changed",
    (400, "tooMany", None): "it asked for more than the service computes in one request",
    (400, None, None): "the request was refused",
    (403, None, None): "this service does not allow it",
    (404, None, "user"): "no such user exists in this organization",
    (404, None, "group"): "no such group exists in this organization",
    (404, None, None): "nothing by that id exists in this organization",
    (412, None, None): "it had changed since the version sent",
    (413, None, None): "the request was larger than the service accepts",
    (429, None, None): "it sent more requests at once than its limits allow; it will retry",
    (500, None, None): "the service failed; its log has the details under the request id",
    (503, None, None): "the service's database was unavailable or too slow; it will retry",
}
# When the request named members that are no users of the organization: {members} lists them.
UNKNOWN_MEMBERS = "it named members that are not users of this organization: {members}"

# Named when the error names no one: by what the route is about, with the id in the path if it had one.
ANONYMOUS = {"user": "a user", "group": "a group"}
BY_ID = {"user": "the user with id {id}", "group": "the group with id {id}"}


def _kind_of(route: str) -> str | None:
    return "group" if "/Groups" in route else "user" if "/Users" in route else None


def _subject_words(error: CallError) -> str:
    kind = error.subject_kind or _kind_of(error.route)
    if error.subject is not None:
        return f"group '{error.subject}'" if kind == "group" else error.subject
    if kind is None:
        return "a resource"
    return BY_ID[kind].format(id=error.resource_id) if error.resource_id else ANONYMOUS[kind]


def describe(error: CallError) -> str:
    """The error in a sentence for an IT admin, by the tables above."""
    caller = error.token_label or UNNAMED_CALLER
    template = ACTIONS.get((error.method, error.route))
    action = (
        template.format(subject=_subject_words(error)) if template else f"call {error.method} {error.route}"
    )
    if error.members:
        reason = UNKNOWN_MEMBERS.format(members=", ".join(error.members))
    else:
        kind = _kind_of(error.route)
        status, scim_type = error.status, error.scim_type
        reason = (
            REASONS.get((status, scim_type, kind))
            or REASONS.get((status, scim_type, None))
            or REASONS.get((status, None, kind))
            or REASONS.get((status, None, None))
            or REASONS.get((status // 100 * 100, None, None), "the request failed")
        )
    code = f"{error.status} {error.scim_type}" if error.scim_type else str(error.status)
    return f"{caller} tried to {action}, but {reason} ({code})."


# --- the read model


@dataclass(frozen=True, slots=True)
class TokenActivity:
    """One active SCIM token of the organization, and when it last called (to the minute; None: never)."""

    token_id: uuid.UUID
    label: str | None
    created_at: datetime.datetime
    last_used_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class CallError:
    """One SCIM request answered 4xx or 5xx; `sentence` says it for an IT admin. `subject` names whom it was
    about (`subject_kind` "user": a userName; "group": a displayName), None when it named no one known."""

    recorded_at: datetime.datetime
    token_id: uuid.UUID
    token_label: str | None
    method: str
    route: str
    status: int
    scim_type: str | None
    detail: str
    request_id: str | None
    subject_kind: str | None
    subject: str | None
    resource_id: uuid.UUID | None
    members: tuple[str, ...]
    sentence: str = ""


@dataclass(frozen=True, slots=True)
class StatusCount:
    status: int
    count: int


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """`last_call_at`: the latest call by any of `tokens`; `errors`: the newest first; `errors_last_day`: how
    many errors of each status in the last 24 hours (counted by the hour, so up to 25 hours back), every
    error counted, kept or not."""

    org_id: uuid.UUID
    checked_at: datetime.datetime
    last_call_at: datetime.datetime | None
    tokens: tuple[TokenActivity, ...]
    errors: tuple[CallError, ...]
    errors_last_day: tuple[StatusCount, ...]


_TOKENS = """
SELECT token_id, label, created_at, last_used_at FROM api_tokens
WHERE org_id = $1 AND scope = 'scim' AND revoked_at IS NULL ORDER BY created_at, token_id
"""
_ERRORS = """
SELECT recorded_at, token_id, token_label, method, route, status, scim_type, detail, request_id, subject_kind,
       subject, resource_id, members
FROM scim_call_errors WHERE org_id = $1 ORDER BY recorded_at DESC, error_id DESC LIMIT $2
"""
_COUNTS = """
SELECT status, sum(count)::bigint AS count FROM scim_call_error_counts
WHERE org_id = $1 AND hour >= date_trunc('hour', now() - interval '24 hours') GROUP BY status ORDER BY status
"""


class ConnectionStatusService:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], errors: ScimCallErrors) -> None:
        self._pool = pool
        self._errors = errors

    @property
    def most_errors(self) -> int:
        """The most errors a status can show: those an organization keeps."""
        return self._errors.kept

    async def status(self, org_id: uuid.UUID, limit: int = 20) -> ConnectionStatus:
        """The organization's connection status with its `limit` newest errors. What this process noted and
        has not written yet is written first, so an admin who has just retried sees the attempt."""
        await self._errors.flush(org_id)
        async with self._pool.acquire() as connection:
            checked_at = await connection.fetchval("SELECT now()")
            tokens = [TokenActivity(*row) for row in await connection.fetch(_TOKENS, org_id)]
            rows = await connection.fetch(_ERRORS, org_id, min(limit, self.most_errors))
            counts = [StatusCount(*row) for row in await connection.fetch(_COUNTS, org_id)]
        errors = [CallError(**{**dict(row), "members": tuple(row["members"])}) for row in rows]
        used = [token.last_used_at for token in tokens if token.last_used_at is not None]
        return ConnectionStatus(
            org_id,
            checked_at,
            max(used, default=None),
            tuple(tokens),
            tuple(dataclasses.replace(error, sentence=describe(error)) for error in errors),
            tuple(counts),
        )
