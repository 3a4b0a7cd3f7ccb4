"""What every response of `scimledger serve` carries, over real HTTP: the server's answers to requests it
cannot parse included, which never reach the app."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.http import SECURITY_HEADERS
from tests.service import ServiceProcess, new_org, response_head

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(cli_env: dict[str, str]) -> Iterator[tuple[ServiceProcess, str]]:
    service = ServiceProcess({**cli_env, "SCIMLEDGER_LOG_LEVEL": "warning"}).start()
    [token] = new_org(service.env, f"Edge {uuid.uuid4().hex[:6]}", "scim")
    yield service, token
    assert service.stop() == 0, service.output()


def raw(port: int, request: bytes) -> tuple[int, dict[str, str]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        head = response_head(connection).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


def test_every_response_carries_the_security_headers_once_and_none_allows_cross_origin_use(
    served: tuple[ServiceProcess, str],
) -> None:
    service, token = served
    origin = {"Origin": "https://evil.example"}
    with httpx.Client(base_url=service.root, headers=origin) as client:
        answers = {
            "ok": client.get("/scim/v2/ServiceProviderConfig"),
            "created": client.post(
                "/scim/v2/Users",
                json={"userName": "edge@acme.example"},
                headers={"Authorization": f"Bearer {token}"},
            ),
            "unauthorized": client.get("/scim/v2/Users"),
            "no such route": client.get("/nowhere"),
            "wrong method": client.put("/scim/v2/Users", headers={"Authorization": f"Bearer {token}"}),
            "preflight": client.options("/scim/v2/Users", headers={"Access-Control-Request-Method": "POST"}),
        }
    statuses = {what: answer.status_code for what, answer in answers.items()}
    assert statuses == {
        "ok": 200,
        "created": 201,
        "unauthorized": 401,
        "no such route": 404,
        "wrong method": 405,
        "preflight": 405,
    }
    for what, answer in answers.items():
        for name, value in SECURITY_HEADERS:
            assert answer.headers.get_list(name) == [value], (what, name)
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")], what
    status, headers = raw(
        service.port, b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Length: qz\r\n\r\n"
    )
    assert status == 400
    for name, value in SECURITY_HEADERS:
        assert headers.get(name.lower()) == value, name
