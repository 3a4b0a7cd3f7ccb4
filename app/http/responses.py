"""What every route answers with: SCIM responses (RFC 7644 §3.12 errors, §3.4.2 lists) and the SCIM base URL
its resources' locations start with."""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response

from app.http.endpoint import services_of
from scim.errors import ScimType

SCIM_MEDIA_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
# The detail of every 500: what failed is in the log, not in the answer.
FAILED_DETAIL = "The service failed to handle this request; it has been logged."
_encoder = msgspec.json.Encoder()


class ScimResponse(Response):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def list_response(total: int, start_index: int, resources: list[dict[str, Any]]) -> ScimResponse:
    """An RFC 7644 §3.4.2 ListResponse; the counts are integers, as Okta's connection test checks."""
    return ScimResponse(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


def error_response(
    status: int, detail: str, scim_type: ScimType | None = None, headers: dict[str, str] | None = None
) -> ScimResponse:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    return ScimResponse(body, status_code=status, headers=headers)


def service_root(request: Request) -> str:
    """The service's root URL as its clients reach it (no trailing slash): SCIMLEDGER_PUBLIC_URL without its
    SCIM path when set, else the request's own."""
    return services_of(request).settings.public_root or base_url(request).removesuffix("/scim/v2")


def base_url(request: Request) -> str:
    configured = services_of(request).settings.public_url
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    server = scope.get("server")
    return _scim_base(
        scope["scheme"],
        request.headers.get("host"),
        tuple(server) if server else None,
        scope.get("app_root_path", scope.get("root_path", "")),
    )


# Building Starlette's URL object for every resource took 7% of a GET's time, and the answer depends only on
# these four values. Host headers are the client's to choose, so the memo stays small.
@functools.lru_cache(maxsize=64)
def _scim_base(scheme: str, host: str | None, server: tuple[str, int] | None, root_path: str) -> str:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": root_path if root_path.endswith("/") else root_path + "/",
        "query_string": b"",
        "headers": [(b"host", host.encode("latin-1"))] if host is not None else [],
    }
    return str(URL(scope=scope)).rstrip("/") + "/scim/v2"
