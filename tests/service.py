"""`scimledger` as a real process: the CLI, and `serve` under uvicorn on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CLI = str(Path(sys.executable).parent / "scimledger")


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=check)


def response_head(connection: socket.socket) -> bytes:
    """Read a raw HTTP response from `connection` up to the end of its headers."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    return received.split(b"\r\n\r\n", 1)[0]


def read_response(connection: socket.socket) -> tuple[bytes, bytes]:
    """Read one whole response (head and a Content-Length body) from a connection kept open for more, so that
    the next read starts at the next response, however the bytes were split between reads."""
    received = b""
    while b"\r\n\r\n" not in received and (chunk := connection.recv(65536)):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length and (chunk := connection.recv(65536)):
        body += chunk
    assert len(body) == length, "the response's body and nothing more: no second response was asked for yet"
    return head, body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def new_org(env: dict[str, str], org_name: str, *scopes: str) -> list[str]:
    """Create an organization as an admin does, and issue it one token for each of `scopes`."""
    run_cli(env, "org", "create", org_name)
    return [
        run_cli(env, "token", "issue", "--org", org_name, "--scope", scope).stdout.strip() for scope in scopes
    ]


class ServiceProcess:
    """`scimledger serve` on a free port; its log goes to a file, shown when a test needs it."""

    def __init__(self, env: dict[str, str], port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.args = args
        self.env = {**env, "PORT": str(self.port)}
        self.root = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.root}/scim/v2"
        self.log = Path(tempfile.mkstemp(prefix="scimledger-serve-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 30.0) -> ServiceProcess:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([CLI, "serve", *self.args], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + ready_within
        while True:
            try:
                if httpx.get(f"{self.root}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, f"scimledger serve exited during start-up:\n{self.output()}"
            assert time.monotonic() < deadline, (
                f"scimledger serve not up within {ready_within} s:\n{self.output()}"
            )
            time.sleep(0.1)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        """SIGTERM, as a supervisor stops it; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def output(self, containing: str = "") -> str:
        """The end of the log, or only its lines containing `containing`."""
        text = self.log.read_text(errors="replace")
        if containing:
            text = "\n".join(line for line in text.splitlines() if containing in line)
        return text[-5000:]
