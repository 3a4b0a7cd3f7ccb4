"""The HTTP edge's answers to Starlette's own exceptions."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.requests import Request

from app.http.errors import on_http_exception
from app.http.middleware import received_path


def request_to(path: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""})


async def test_a_404_names_the_path_received() -> None:
    response = await on_http_exception(request_to("/scim/v2/Userz"), HTTPException(404))
    assert json.loads(response.body)["detail"].startswith("No such endpoint: /scim/v2/Userz.")


async def test_a_detail_with_braces_is_answered_as_it_is_never_formatted() -> None:
    response = await on_http_exception(request_to("/x"), HTTPException(400, "expected {path} or {}"))
    assert response.status_code == 400
    assert json.loads(response.body)["detail"] == "expected {path} or {}"


async def test_a_404_and_the_log_show_a_paths_control_characters_escaped() -> None:
    forged = "/scim/v2/x\n2026-12-02T00:00:00+00:00 INFO scimledger.access: FORGED\x1b[2J"
    response = await on_http_exception(request_to(forged), HTTPException(404))
    detail = json.loads(response.body)["detail"]
    assert "\n" not in detail
    assert "\x1b" not in detail
    assert "/scim/v2/x\\x0a2026-12-02" in detail
    assert received_path({"path": forged}).endswith("FORGED\\x1b[2J")
