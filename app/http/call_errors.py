"""The SCIM errors an organization's identity provider got, handed to the connection status
(app/services/scim_call_errors.py) by the one place that answers them (`app.http.errors`).

A request counts when its SCIM token was known (`authenticate` keeps its principal on the scope): with none, or
with an unknown or revoked one, there is no organization to tell. What it was about is named from what the
request said (a POST's userName, a PUT's displayName), from the error (the userName that collided, the members
that are no users), or else from the id in its path, which the write names as the projections know it.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

from app.http.endpoint import services_of
from app.services.scim_call_errors import FailedCall, SubjectKind
from app.services.tenancy import Principal
from domain.errors import InvalidMember, UserNameTaken

_PRINCIPAL = "scimledger.principal"
_BODY = "scimledger.body"
_SCIM_ROUTES = "/scim/v2/"
# Longer values are cut: a refused value may be as long as the body limit allows, and a status shows a name.
_MAX_NAME = 300
_MAX_DETAIL = 2000
_MAX_MEMBERS = 20


def remember_principal(scope: Scope, principal: Principal) -> None:
    """Keep who sent the request, for its error, if it has one."""
    scope[_PRINCIPAL] = principal


def remember_body(scope: Scope, body: Any) -> None:
    """Keep the request's decoded body, for the name its error is about, if it has one."""
    scope[_BODY] = body


def note_failed_call(
    request: Request, status: int, detail: str, scim_type: str | None, error: Exception | None
) -> None:
    """Hand the error answered to `request` to the connection status, if an organization's SCIM token sent
    it. Costs no I/O: the status's writer batches it."""
    principal = request.scope.get(_PRINCIPAL)
    route: str | None = getattr(request.scope.get("route"), "path", None)
    if not isinstance(principal, Principal) or principal.scope != "scim" or route is None:
        return
    if not route.startswith(_SCIM_ROUTES):
        return
    kind: SubjectKind | None = "group" if "/Groups" in route else "user" if "/Users" in route else None
    subject = _named_subject(request.scope.get(_BODY), kind, error)
    members = error.unknown[:_MAX_MEMBERS] if isinstance(error, InvalidMember) else []
    services_of(request).scim_call_errors.note(
        FailedCall(
            org_id=principal.org_id,
            token_id=principal.token_id,
            recorded_at=datetime.datetime.now(datetime.UTC),
            method=request.method,
            route=route,
            status=status,
            scim_type=scim_type,
            detail=_storable(detail, _MAX_DETAIL),
            request_id=request.scope["state"].get("request_id"),
            subject_kind=kind,
            subject=None if subject is None else _storable(subject, _MAX_NAME),
            resource_id=_resource_id(request),
            members=tuple(_storable(member, _MAX_NAME) for member in members),
        )
    )


def _named_subject(body: Any, kind: SubjectKind | None, error: Exception | None) -> str | None:
    if isinstance(error, UserNameTaken):
        return error.user_name
    attribute = {"user": "userName", "group": "displayName"}.get(kind or "")
    if attribute is None or not isinstance(body, dict):
        return None
    name = body.get(attribute)
    return name if isinstance(name, str) and name.strip() else None


def _resource_id(request: Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.path_params["id"])
    except (KeyError, ValueError):
        return None


def _storable(text: str, limit: int) -> str:
    """`text` as PostgreSQL can store it (no U+0000), cut to `limit` characters."""
    # A lone surrogate (JSON allows one escaped) would fail the batch's encoding: replaced.
    text = text.replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"
