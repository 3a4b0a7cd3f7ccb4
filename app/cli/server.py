"""`scimledger serve`'s server: the HTTP edge (app/http/app.py) under uvicorn, with the edge's bounds."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import msgspec
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.cli.exits import ExitCode
from app.http.app import create_app
from app.http.middleware import SECURITY_HEADERS
from app.http.protocol import EdgeLimits, bounded_protocol
from app.infrastructure import logs
from app.infrastructure.admission import shared_by_processes
from app.infrastructure.database import database_url
from app.infrastructure.settings import Settings


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process would die by the
        # signal, skip atexit (leaving the embedded PostgreSQL running) and report failure to its
        # supervisor. A completed graceful shutdown is a success: handle the signals, exit normally.
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> ExitCode:
    """Serve until SIGTERM or SIGINT, in this process or in `workers` processes; NOT_STARTED when the server
    could not start."""
    if workers > 1:
        return _serve_in_processes(settings, host, port, workers)
    # httptools, bounded: the head's size, header count and deadline, and the body's deadline (uvicorn has
    # none of these for it).
    protocol = bounded_protocol(_edge_limits(settings))
    config = uvicorn.Config(create_app(settings), http=protocol, **_options(settings, host, port))
    server = _Server(config)
    try:
        server.run()
    except SystemExit:
        # uvicorn exits the process when it cannot bind; its code (3) is ours for "tampered".
        return ExitCode.NOT_STARTED
    return ExitCode.OK if server.started else ExitCode.NOT_STARTED


class _ProcessConfig(uvicorn.Config):
    """What each of `serve --workers N`'s processes loads. uvicorn starts them with multiprocessing's spawn,
    which pickles the config: neither a Starlette app nor the bounded protocol class (made at run time) can
    be, so the config carries the settings instead and builds both in the process that serves with them."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        # The app is a placeholder until `load`, which only the serving processes call.
        super().__init__("app.http.app:create_app", **options)
        self.served_settings = settings

    def load(self) -> None:
        if not self.loaded:
            logs.configure(self.served_settings.log_level, self.served_settings.log_format)
            self.app = create_app(self.served_settings)
            self.http = bounded_protocol(_edge_limits(self.served_settings))
        super().load()


def _serve_in_processes(settings: Settings, host: str, port: int, workers: int) -> ExitCode:
    # One database for every process: resolved here, so that the processes never race to start the embedded
    # server, and this process, which outlives them, is the one that stops it at exit.
    settings = msgspec.structs.replace(settings, database_url=database_url(settings))
    settings = shared_by_processes(settings, workers)
    config = _ProcessConfig(settings, workers=workers, **_options(settings, host, port))
    try:
        socket = config.bind_socket()
    except SystemExit:
        return ExitCode.NOT_STARTED
    # uvicorn's supervisor: starts the processes on the one socket, restarts one that dies, and on SIGTERM or
    # SIGINT stops them (each finishes its requests in flight, as `serve` does) and returns.
    supervisor = Multiprocess(config, sockets=[socket])
    supervisor.run()
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return ExitCode.NOT_STARTED if failed else ExitCode.OK


def _edge_limits(settings: Settings) -> EdgeLimits:
    return EdgeLimits(
        max_head_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        head_timeout_seconds=settings.request_head_timeout_seconds,
        body_timeout_seconds=settings.request_body_timeout_seconds,
    )


def _options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "log_level": settings.log_level,
        "proxy_headers": False,
        # Logging is configured by `main` (and by each process of `--workers`); the app writes its own access
        # log, without query strings.
        "log_config": None,
        "access_log": False,
        "headers": SECURITY_HEADERS,
        # No "server: uvicorn": it tells a client what to attack, and uvicorn validates and writes every
        # default header again on every response.
        "server_header": False,
        # Over this many open connections a request gets uvicorn's 503 at once (the connection counts itself).
        # Per process: with --workers N, N times as many in all.
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        # No route is a WebSocket: an Upgrade request stays plain HTTP, under the bounds above, instead of
        # being handed to a WebSocket protocol that has none of them.
        "ws": "none",
    }
