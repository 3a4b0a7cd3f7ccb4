"""A pg_auto_failover formation on loopback: a monitor, a primary and a synchronous standby, each a
`pg_autoctl` supervisor of its own, started with `setsid` (so that killing one node's process group takes
that node alone) as the `postgres` user (pg_autoctl refuses to run as root), with its configuration, state,
runtime and socket directories under one temporary directory that is removed afterwards.

The monitor's health-check and demote timeouts are lowered here, for tests only: in production they are what
keeps a slow or briefly unreachable primary from being failed over (and two primaries from accepting writes),
so they stay at pg_auto_failover's defaults there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from tests.service import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_AUTOCTL = shutil.which("pg_autoctl")
DATABASE = "scimledger"
# Test-only: how fast the monitor notices a dead primary and gives up waiting for it to demote itself.
# pg_auto_failover's defaults (5 s checks, 20 s before a node is unhealthy, 30 s demote timeout) are what
# production keeps.
MONITOR_TIMEOUTS_MS = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.node_considered_unhealthy_timeout": 2000,
    "pgautofailover.primary_demote_timeout": 2000,
    "pgautofailover.startup_grace_period": 2000,
}
# Within this, a formation is ready (about 7 s here, most of it the standby's base backup).
READY_WITHIN_SECONDS = 120.0
_STATES = "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid"
# pg_autoctl sizes shared_buffers from the machine's memory (gigabytes here); a test's nodes need little.
SMALL_SERVER = {"shared_buffers": "128MB", "max_connections": "100"}


class FormationError(RuntimeError):
    pass


def as_postgres(run_as_postgres: bool) -> dict[str, Any]:
    """subprocess's options to run a command as the `postgres` user: pg_autoctl and PostgreSQL refuse root."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if run_as_postgres else {}


def owned(path: Path, run_as_postgres: bool) -> Path:
    """`path`, a directory made if need be, owned by the user the servers run as."""
    path.mkdir(parents=True, exist_ok=True)
    if run_as_postgres:
        postgres = pwd.getpwnam("postgres")
        os.chown(path, postgres.pw_uid, postgres.pw_gid)
    return path


def run_captured(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float, run_as_postgres: bool
) -> subprocess.CompletedProcess[str]:
    """`args` run to the end, its output captured, as the user the servers run as; the caller reads its code."""
    return subprocess.run(
        args,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **as_postgres(run_as_postgres),
    )


@dataclass
class Node:
    name: str
    port: int
    home: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        return None


@dataclass
class Formation:
    root: Path
    monitor: Node
    nodes: list[Node] = field(default_factory=list)
    run_as_postgres: bool = os.geteuid() == 0
    # The monitor's settings: the tests' lowered timeouts unless told otherwise ({}: pg_auto_failover's own).
    monitor_settings: dict[str, int] = field(default_factory=lambda: dict(MONITOR_TIMEOUTS_MS))

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    @property
    def monitor_url(self) -> str:
        return f"postgresql://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"

    def url(self, database: str = DATABASE) -> str:
        """The service's multi-host URL: whichever node is the primary, and no other."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def node_url(self, node: Node, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{database}"

    @property
    def monitor_admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.monitor.port}/pg_auto_failover"

    async def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported, goal) state, as the monitor has them."""
        connection = await asyncpg.connect(self.monitor_admin_url, timeout=2)
        try:
            return {row[0]: (row[1], row[2]) for row in await connection.fetch(_STATES)}
        finally:
            await connection.close()

    async def until_states(self, wanted: dict[str, str], nudge: Node | None = None) -> None:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        seen: object = None
        while time.monotonic() < deadline:
            for node in [self.monitor, *self.nodes]:
                if node.process is not None and node.process.poll() is not None:
                    raise FormationError(f"pg_autoctl of {node.name} exited:\n{self.logs()}")
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                seen = await self.states()
                if seen == {name: (state, state) for name, state in wanted.items()}:
                    return
                if nudge is not None:
                    # The standby's base backup begins with a checkpoint, which the idle primary would
                    # otherwise spread over minutes.
                    primary = await asyncpg.connect(self.node_url(nudge, "postgres"), timeout=2)
                    try:
                        await primary.execute("CHECKPOINT")
                    finally:
                        await primary.close()
            await asyncio.sleep(0.2)
        raise FormationError(f"formation not {wanted} within {READY_WITHIN_SECONDS} s: {seen}\n{self.logs()}")

    async def start(self) -> None:
        """Monitor, then a primary, then its synchronous standby; returns when both are in place."""
        self.start_monitor()
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while True:
            try:
                monitor = await asyncpg.connect(self.monitor_admin_url, timeout=2)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                if time.monotonic() > deadline:
                    raise FormationError(
                        f"no monitor within {READY_WITHIN_SECONDS} s:\n{self.logs()}"
                    ) from None
                await asyncio.sleep(0.2)
        try:
            for name, value in self.monitor_settings.items():
                await monitor.execute(f"ALTER SYSTEM SET {name} = {value}")
            await monitor.execute("SELECT pg_reload_conf()")
        finally:
            await monitor.close()
        primary = self.add_node("node1", initdb=True)
        await self.until_states({"node1": "single"})
        self.add_node("node2", initdb=False)
        await self.until_states({"node1": "primary", "node2": "secondary"}, nudge=primary)

    async def primary(self) -> Node:
        """The node the monitor has as primary (or promoting: wait_primary)."""
        states = await self.states()
        [primary] = [
            node
            for node in self.nodes
            if not node.killed and states[node.name][0] in ("primary", "wait_primary")
        ]
        return primary

    # --- processes ---------------------------------------------------------------------------------

    def _env(self, node: Node) -> dict[str, str]:
        return {
            "PATH": f"{PG_BIN}:/usr/bin:/bin",
            "HOME": str(node.home),
            "PG_CONFIG": str(PG_BIN / "pg_config"),
            "PG_REGRESS_SOCK_DIR": str(self.sockets),
            "XDG_CONFIG_HOME": str(node.home / "config"),
            "XDG_DATA_HOME": str(node.home / "share"),
            "XDG_RUNTIME_DIR": str(node.home / "run"),
            "PGHOST": str(self.sockets),
            "LANG": "C.UTF-8",
        }

    def _owned(self, path: Path) -> Path:
        return owned(path, self.run_as_postgres)

    def _command(self, args: list[str]) -> list[str]:
        if PG_AUTOCTL is None:
            raise FormationError("pg_autoctl is not installed (Debian: pg-auto-failover-cli)")
        return [PG_AUTOCTL, *args]

    def _popen(self, node: Node, args: list[str]) -> subprocess.Popen[bytes]:
        user = as_postgres(self.run_as_postgres)
        with open(node.log, "ab") as log:
            return subprocess.Popen(
                self._command(args),
                env=self._env(node),
                cwd=node.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # setsid: this node's supervisor leads a process group of its own
                **user,  # type: ignore[arg-type]
            )

    def _run(self, node: Node, args: list[str], timeout: float = 30) -> str:
        done = run_captured(self._command(args), self._env(node), node.home, timeout, self.run_as_postgres)
        if done.returncode != 0:
            raise FormationError(f"pg_autoctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def _initdb(self, node: Node) -> None:
        """The data directory made beforehand, so that the server's first start already has small settings
        (postgresql.auto.conf is read after the file pg_autoctl writes; a standby copies it from the
        primary)."""
        user = as_postgres(self.run_as_postgres)
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(node.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            env=self._env(node),
            capture_output=True,
            check=True,
            timeout=60,
            **user,  # type: ignore[arg-type]
        )
        settings = "".join(f"{name} = '{value}'\n" for name, value in SMALL_SERVER.items())
        (node.pgdata / "postgresql.auto.conf").write_text(settings)

    def _new_node(self, name: str) -> Node:
        home = self._owned(self.root / name)
        for sub in ("config", "share", "run"):
            self._owned(home / sub)
        return Node(name, free_port(), home, self.root / f"{name}.log")

    def start_monitor(self) -> None:
        self._initdb(self.monitor)
        self.monitor.process = self._popen(
            self.monitor,
            ["create", "monitor", "--pgdata", str(self.monitor.pgdata), "--pgport", str(self.monitor.port),
             "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--run"],
        )  # fmt: skip

    def add_node(self, name: str, *, initdb: bool) -> Node:
        node = self._new_node(name)
        if initdb:
            self._initdb(node)
        node.process = self._popen(
            node,
            ["create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port),
             "--hostname", "127.0.0.1", "--name", name, "--dbname", DATABASE, "--monitor", self.monitor_url,
             "--auth", "trust", "--no-ssl", "--run"],
        )  # fmt: skip
        self.nodes.append(node)
        return node

    def kill(self, node: Node) -> None:
        """Crash `node`: SIGKILL its supervisor's process group and its postmaster (killing the postmaster
        alone makes pg_autoctl restart it in place, with no failover)."""
        postmaster = node.postmaster_pid()
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)
        node.process.wait(timeout=10)
        node.killed = True

    def switchover(self, node: Node) -> None:
        """A planned failover, as an operator asks for one: `node`, the primary, is demoted (made read-only,
        then restarted as a standby) once the standby has caught up, and the standby promoted."""
        self._run(node, ["perform", "switchover", "--pgdata", str(node.pgdata), "--wait", "60"], timeout=90)

    def stop(self) -> None:
        """Every process of the formation gone, whatever state it was left in."""
        for node in [*self.nodes, self.monitor]:
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for node in [*self.nodes, self.monitor]:
            if node.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=5)
        # A postmaster outlives its supervisor's group when it was started in a session of its own.
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if any(str(self.root) in part for part in cmdline):
                with contextlib.suppress(psutil.Error):
                    process.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {node.name} ---\n{node.log.read_text(errors='replace')[-3000:]}"
            for node in [self.monitor, *self.nodes]
            if node.log.exists()
        )


@contextlib.contextmanager
def formation_directory() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="scimledger-ha-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def new_formation(root: Path) -> Formation:
    formation = Formation(root, Node("monitor", 0, root, root / "monitor.log"))
    formation._owned(root)
    formation._owned(formation.sockets)
    formation.monitor = formation._new_node("monitor")
    return formation
