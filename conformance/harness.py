"""A real `scimledger serve`, and organizations set up through the CLI as an org admin sets them up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

# The CLI of the virtualenv this harness runs in: `make conformance` runs it with .venv/bin/python.
CLI = str(Path(sys.executable).parent / "scimledger")


@dataclass(frozen=True)
class Tenant:
    """One organization with a project and a role (so that it has an app-owned group) and a SCIM token."""

    org_name: str
    org_id: str
    base_url: str
    token: str

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"


def run_cli(env: dict[str, str], *args: str) -> str:
    """Run a CLI command; its stdout. A failing command stops the run with what the CLI said."""
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scimledger {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """`scimledger serve` on a free loopback port, its log in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/scim/v2"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 60.0) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([CLI, "serve"], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + ready_within
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"scimledger serve exited at start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"scimledger serve not ready within {ready_within} s; see {self.log_path}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.root}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it, so that the embedded database is stopped with it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def new_tenant(self, org_name: str) -> Tenant:
        """An organization as a new customer's admin sets it up: org, a project and a role, a SCIM token."""
        org_id = run_cli(self.env, "org", "create", org_name).strip().splitlines()[-1]
        run_cli(self.env, "project", "create", "--org", org_id, "Apollo")
        run_cli(self.env, "role", "create", "--org", org_id, "Admin")
        token = run_cli(self.env, "token", "issue", "--org", org_id, "--label", "conformance").strip()
        return Tenant(org_name=org_name, org_id=org_id, base_url=self.base_url, token=token)


def server_environment(data_dir: Path) -> dict[str, str]:
    """The environment `serve` and the CLI share: DATABASE_URL if the caller set one, else an embedded server
    whose data lives in `data_dir`, away from the developer's own `./.data`."""
    env = dict(os.environ)
    if not env.get("DATABASE_URL"):
        env["SCIMLEDGER_DATA_DIR"] = str(data_dir)
    env.setdefault("SCIMLEDGER_LOG_FORMAT", "text")
    return env
