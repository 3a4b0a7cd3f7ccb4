"""A primary and its physical streaming standby on loopback: a cluster made with initdb and started with
pg_ctl, and a standby made from it with `pg_basebackup -R` (which writes standby.signal and the
primary_conninfo), both as the `postgres` user (initdb refuses root) under a temporary directory that is
removed afterwards, as tests/ha/formation.py runs pg_auto_failover.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ha.formation import PG_BIN, SMALL_SERVER, formation_directory, owned, run_captured
from tests.service import free_port

DATABASE = "scimledger"


@dataclass
class Server:
    name: str
    port: int
    pgdata: Path
    log: Path

    def url(self, database: str = DATABASE, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


class StreamingPair:
    """`primary` and `standby`, started by `start` and stopped by `stop` whatever state they were left in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run_as_postgres = os.geteuid() == 0
        self._owned(root)
        self.sockets = self._owned(root / "sockets")
        self.primary = Server("primary", free_port(), root / "primary", root / "primary.log")
        self.standby = Server("standby", free_port(), root / "standby", root / "standby.log")

    def _owned(self, path: Path) -> Path:
        return owned(path, self.run_as_postgres)

    def _run(self, *args: str, timeout: float = 120) -> None:
        env = {"PATH": f"{PG_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.root)}
        done = run_captured(list(args), env, self.root, timeout, self.run_as_postgres)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stdout}{done.stderr}\n{self.logs()}")

    def _pg_ctl_start(self, server: Server) -> None:
        options = " ".join(
            [
                f"-p {server.port}",
                f"-k {self.sockets}",
                "-c listen_addresses=127.0.0.1",
                *(f"-c {name}={value}" for name, value in SMALL_SERVER.items()),
            ]
        )
        self._run(str(PG_BIN / "pg_ctl"), "start", "-w", "-D", str(server.pgdata), "-l", str(server.log),
                  "-o", options)  # fmt: skip

    def start(self) -> None:
        """initdb and start the primary (trust on loopback, replication included, as initdb's pg_hba has it),
        create the service's database, then base-back it up into a standby that streams from it."""
        self._owned(self.primary.pgdata)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.primary.pgdata), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8")  # fmt: skip
        self._pg_ctl_start(self.primary)
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                  DATABASE)  # fmt: skip
        # --checkpoint=fast: an idle primary would otherwise spread the backup's checkpoint over minutes.
        self._run(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U",
                  "postgres", "-D", str(self.standby.pgdata), "-R", "-X", "stream", "--checkpoint=fast")  # fmt: skip
        self._pg_ctl_start(self.standby)

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            if (server.pgdata / "postmaster.pid").exists():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run(str(PG_BIN / "pg_ctl"), "stop", "-m", "immediate", "-D", str(server.pgdata),
                              timeout=30)  # fmt: skip

    def logs(self) -> str:
        return "\n".join(
            f"--- {server.name} ---\n{server.log.read_text(errors='replace')[-3000:]}"
            for server in (self.primary, self.standby)
            if server.log.exists()
        )


@contextlib.contextmanager
def streaming_pair() -> Iterator[StreamingPair]:
    with formation_directory() as root:
        pair = StreamingPair(root)
        try:
            pair.start()
            yield pair
        finally:
            pair.stop()
