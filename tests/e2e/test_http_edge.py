"""What every response of `scimledger serve` carries, over real HTTP: the server's answers to requests it
cannot parse included, which never reach the app."""

from __future__ import annotations

import contextlib
import select
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from app.http.middleware import SECURITY_HEADERS
from tests.service import ServiceProcess, new_org, read_response, response_head

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


# Small limits, so that each test of the edge's bounds is short. `tight` closes slow heads after 1 s; `capped`
# holds idle connections open long enough to fill its cap of 4 connections.
TIGHT = {
    "SCIMLEDGER_MAX_HEADER_BYTES": "4096",
    "SCIMLEDGER_MAX_HEADERS": "20",
    "SCIMLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS": "1",
    "SCIMLEDGER_REQUEST_BODY_TIMEOUT_SECONDS": "1",
}
CAPPED = {
    "SCIMLEDGER_MAX_CONNECTIONS": "4",
    "SCIMLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS": "60",
    "SCIMLEDGER_KEEP_ALIVE_TIMEOUT_SECONDS": "60",
}


def _serve(cli_env: dict[str, str], settings: dict[str, str]) -> Iterator[ServiceProcess]:
    service = ServiceProcess({**cli_env, "SCIMLEDGER_LOG_LEVEL": "warning", **settings}).start()
    yield service
    assert service.stop() == 0, service.output()


@pytest.fixture(scope="module")
def tight(cli_env: dict[str, str]) -> Iterator[ServiceProcess]:
    yield from _serve(cli_env, TIGHT)


@pytest.fixture(scope="module")
def tight_token(tight: ServiceProcess) -> str:
    [token] = new_org(tight.env, f"Edge {uuid.uuid4().hex[:6]}", "scim")
    return token


@pytest.fixture(scope="module")
def capped(cli_env: dict[str, str]) -> Iterator[ServiceProcess]:
    yield from _serve(cli_env, CAPPED)


def answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The response on `connection` when the server closes it after answering; a timeout if it never does."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


def test_a_request_head_over_the_byte_limit_is_refused_with_431_before_it_ends(tight: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as connection:
        # Never finished: only a refusal can answer it. Twice the limit, so that it is over whatever is counted.
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 8192)
        status, headers, body = answer(connection)
    assert status == 431
    assert headers["content-type"] == "application/scim+json"
    error = msgspec.json.decode(body)
    assert error["status"] == "431"
    assert "4096 bytes" in error["detail"]
    assert "SCIMLEDGER_MAX_HEADER_BYTES" in error["detail"]
    for name, value in SECURITY_HEADERS:
        assert headers.get(name.lower()) == value, name
    assert httpx.get(f"{tight.root}/healthz", timeout=10).status_code == 200


def test_a_request_with_more_headers_than_the_limit_is_refused_with_431(tight: ServiceProcess) -> None:
    fields = b"".join(b"X-Field-%d: v\r\n" % index for index in range(40))
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        status, _, body = answer(connection)
    assert status == 431
    detail = msgspec.json.decode(body)["detail"]
    assert "20 headers" in detail
    assert "SCIMLEDGER_MAX_HEADERS" in detail
    assert httpx.get(f"{tight.root}/healthz", timeout=10).status_code == 200


def test_a_request_at_both_header_limits_is_served(tight: ServiceProcess) -> None:
    def head(fields: list[bytes]) -> bytes:
        return (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n"
        )

    fields = [b"X-Field-%02d: v" % index for index in range(19)]  # 20 headers with Host
    fields[-1] += b"v" * (4096 - len(head(fields)))
    assert len(head(fields)) == 4096
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as connection:
        connection.sendall(head(fields))
        assert response_head(connection).startswith(b"HTTP/1.1 200 ")


def test_each_request_on_a_connection_has_the_whole_head_limit(tight: ServiceProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 3000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as connection:
        for _ in range(2):  # one after another: 6 KiB of heads on one connection, under a limit of 4 KiB each
            connection.sendall(request)
            head, _ = read_response(connection)
            assert head.startswith(b"HTTP/1.1 200 ")
        connection.sendall(request * 2)  # pipelined: two heads in one write
        received = b""
        while received.count(b"HTTP/1.1 ") < 2 and (chunk := connection.recv(65536)):
            received += chunk
    assert received.count(b"HTTP/1.1 200 ") == 2, received


def test_a_body_that_arrives_with_its_head_is_not_counted_as_head(
    tight: ServiceProcess, tight_token: str
) -> None:
    # Whitespace is valid JSON: a body of twice the head's limit, sent with its head in one write.
    body = b'{"userName": "edge-%s@acme.example"}' % uuid.uuid4().hex.encode() + b" " * 8192
    request = (
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (tight_token.encode(), len(body))
    )
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as connection:
        connection.sendall(request + body)
        assert response_head(connection).startswith(b"HTTP/1.1 201 ")


def trickle(port: int, start: bytes) -> tuple[bytes, bool]:
    """Send `start`, then a byte every 0.2 s for 20 s at most: what the server answered, and whether it closed."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(start)
        for _ in range(100):
            if select.select([connection], [], [], 0.2)[0]:
                try:
                    chunk = connection.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received += chunk
                if not chunk:
                    return received, True
            else:
                with contextlib.suppress(OSError):
                    connection.sendall(b"a")
    return received, False


def test_a_request_head_that_trickles_in_is_answered_408_and_closed_at_the_deadline(
    tight: ServiceProcess,
) -> None:
    received, closed = trickle(tight.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"SCIMLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS" in received
    assert closed


def test_a_request_body_that_trickles_in_is_answered_408_and_closed_at_the_deadline(
    tight: ServiceProcess,
    tight_token: str,
) -> None:
    head = (
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n" % tight_token.encode()
    )
    received, closed = trickle(tight.port, head + b'{"userName": "')
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"SCIMLEDGER_REQUEST_BODY_TIMEOUT_SECONDS" in received
    assert closed
    assert httpx.get(f"{tight.root}/healthz", timeout=10).status_code == 200


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(tight: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as connection:
        assert connection.recv(1) == b""


def test_requests_over_the_connection_cap_get_503_until_a_connection_closes(capped: ServiceProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with contextlib.ExitStack() as stack:
        idle = []
        for _ in range(3):  # each served once, then kept open (keep-alive): 3 connections of the cap of 4
            connection = stack.enter_context(socket.create_connection(("127.0.0.1", capped.port), timeout=10))
            connection.sendall(request)
            assert response_head(connection).startswith(b"HTTP/1.1 200 ")
            idle.append(connection)
        refused = httpx.get(f"{capped.root}/healthz", timeout=10)
        assert refused.status_code == 503
        idle.pop().close()
        statuses = []
        for _ in range(50):
            statuses.append(httpx.get(f"{capped.root}/healthz", timeout=10).status_code)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses
