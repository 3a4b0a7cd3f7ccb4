"""What the management API (/api/v1) answers with: JSON encoded by msgspec, and one error shape for every
error under /api/, whatever raised it:

    {"error": {"type": "not_found", "message": "No organization ….", "request_id": "…"}}

with the HTTP status. `type` is one of ERROR_TYPES' values, fixed by the status, for code to branch on;
`message` is written for the developer reading it; `request_id` is the X-Request-Id echoed on the response,
to quote when asking about a request. SCIM's routes keep SCIM's error bodies: the exception handlers choose by
the request's path (`is_api`)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response
from starlette.types import Scope

API_PREFIX = "/api/"
JSON = "application/json"

ERROR_TYPES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "body_too_large",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """A refusal of the management API's edge, answered in the API's error shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class ErrorDetail(msgspec.Struct, frozen=True):
    type: str
    message: str
    request_id: str | None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


class JsonResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else _encoder.encode(content)


def is_api(scope: Scope) -> bool:
    path: str = scope["path"]
    return path.startswith(API_PREFIX)


def api_error_response(
    scope: Scope, status: int, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    request_id = scope.get("state", {}).get("request_id")
    body = ErrorBody(ErrorDetail(ERROR_TYPES.get(status, "error"), message, request_id))
    return JsonResponse(body, status_code=status, headers=headers)
