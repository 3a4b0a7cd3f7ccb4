"""`scimledger serve`'s server: the HTTP edge (app/http/app.py) under uvicorn, with the edge's bounds."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from app.cli.exits import ExitCode
from app.http.app import create_app
from app.http.middleware import SECURITY_HEADERS
from app.http.protocol import EdgeLimits, bounded_protocol
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


def serve(settings: Settings, host: str, port: int) -> ExitCode:
    """Serve until SIGTERM or SIGINT; NOT_STARTED when the server could not start."""
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level,
        proxy_headers=False,
        # Logging is configured by `main`; the app writes its own access log, without query strings.
        log_config=None,
        access_log=False,
        headers=SECURITY_HEADERS,
        # No "server: uvicorn": it tells a client what to attack, and uvicorn validates and writes every
        # default header again on every response.
        server_header=False,
        # httptools, bounded: the head's size, header count and deadline, and the body's deadline (uvicorn has
        # none of these for it).
        http=bounded_protocol(
            EdgeLimits(
                max_head_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                head_timeout_seconds=settings.request_head_timeout_seconds,
                body_timeout_seconds=settings.request_body_timeout_seconds,
            )
        ),
        # Over this many open connections a request gets uvicorn's 503 at once (the connection counts itself).
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        # No route is a WebSocket: an Upgrade request stays plain HTTP, under the bounds above, instead of
        # being handed to a WebSocket protocol that has none of them.
        ws="none",
    )
    server = _Server(config)
    try:
        server.run()
    except SystemExit:
        # uvicorn exits the process when it cannot bind; its code (3) is ours for "tampered".
        return ExitCode.NOT_STARTED
    return ExitCode.OK if server.started else ExitCode.NOT_STARTED
