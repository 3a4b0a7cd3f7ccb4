"""uvicorn's httptools protocol, bounded: the size and count of a request's headers, and how long its head and
then its body may take to arrive.

uvicorn offers the rest of the edge's bounds itself (`limit_concurrency` answers 503 over a number of open
connections, `timeout_keep_alive` closes idle keep-alive connections), but for httptools, its fast parser,
it has none of these (its h11 protocol has only a size limit, `h11_max_incomplete_event_size`):
- No limit on the head's size. httptools gathers a header's name and value by concatenating each chunk it is
  fed to what it has (and uvicorn does the same with the URL), so a head streamed in costs time quadratic in
  its size, all of it on the event loop: one 128 MiB header cost 15 s of CPU and held `/healthz` for 5 s, and
  eight of them took the process past a gigabyte.
  The bytes must be counted before the parser sees them, in `data_received`.
- No limit on the number of headers, each of which becomes a pair in the ASGI scope.
- No deadline for the head. The keep-alive timer runs only between requests, and not at all before a new
  connection's first request, so a client that sends nothing, or a header byte every few seconds
  (slowloris), holds its connection open for as long as it likes.
- No deadline for the body either: the app waits for it as long as the client takes.

`bounded_protocol(limits)` gives the class that `scimledger serve` passes to uvicorn as `http=`. The fast path
(a request that arrives whole and within the limits) costs a comparison per chunk received, a counter per
header, and one timer armed and cancelled for the head (`make bench-http-edge` measures it with wrk).
"""

from __future__ import annotations

import asyncio
from asyncio.events import TimerHandle
from collections.abc import Callable
from typing import Any, ClassVar

import httptools
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState


class EdgeLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_head_bytes: int = 16 * 1024
    max_headers: int = 100
    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head that is refused; the refusal is already sent."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits] = EdgeLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # True from the connection's start, and from the end of each request's body, until the next head is
        # complete. False while a body is read.
        self.reading_head = True
        self.head_bytes = 0
        self.heads_completed = 0
        self.header_count = 0
        # The head's deadline while a head is read; the body's while a body is read.
        self.deadline: TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A new connection's first head is due from the moment it opens: one that never sends a byte is as slow
        # as one that sends a byte a minute.
        self._arm(self.limits.head_timeout_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused or timed out: what is still in flight is dropped unparsed
        self._receive(data)
        if not self.reading_head and self.deadline is None and not self.transport.is_closing():
            # The head is complete and its body is not, after all that has arrived: the body is due. (Armed only
            # now, so that a request that arrives whole, the usual case, never sets this timer.)
            self._arm(self.limits.body_timeout_seconds, self._body_timed_out)

    def _receive(self, data: bytes) -> None:
        if not self.reading_head:
            self._feed(data)
            return
        allowance = self.limits.max_head_bytes - self.head_bytes
        if len(data) <= allowance:
            # A later request on a keep-alive connection (no deadline yet: uvicorn's own keep-alive timer
            # covered the wait for its first byte): its head is due from that byte, which is this chunk's. The
            # deadline is armed once the chunk is parsed, and only if the head is still incomplete, so that a
            # head that arrives whole, the usual case, costs no timer.
            begun = self.deadline is None
            heads_completed = self.heads_completed
            self.head_bytes += len(data)
            self._feed(data)
            if begun and self.heads_completed == heads_completed and not self.transport.is_closing():
                self._arm(self.limits.head_timeout_seconds, self._head_timed_out)
            return
        if self.deadline is None:
            self._arm(self.limits.head_timeout_seconds, self._head_timed_out)
        # More than the head may still take: feed only what it may, and refuse if the head has not ended within
        # it. If it has, the rest is its body or the next request, and is fed as such.
        heads_completed = self.heads_completed
        self.head_bytes += allowance
        self._feed(data[:allowance])
        if self.transport.is_closing():
            return
        if self.heads_completed == heads_completed:
            self._refuse(
                431,
                f"The request line and headers exceed {self.limits.max_head_bytes} bytes "
                "(SCIMLEDGER_MAX_HEADER_BYTES). Send smaller headers, or raise the limit.",
            )
            return
        self._receive(data[allowance:])

    def _feed(self, data: bytes) -> None:
        """What uvicorn's `data_received` does, except when a callback here has refused the head mid-parse."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.refused:
                return  # the parser error is our `_Refused`, and the refusal is answered already
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn's own warning advises installing a WebSocket library; `serve` has none configured by design.
        self.logger.info("Upgrade request served as plain HTTP: no route is a WebSocket.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            self._refuse(
                431,
                f"The request has more than {self.limits.max_headers} headers (SCIMLEDGER_MAX_HEADERS). "
                "Send fewer headers, or raise the limit.",
            )
            raise _Refused  # stops the parser; `_feed` knows the error it becomes for what it is
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.heads_completed += 1
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever follows on this connection is the next request's head.
        self.reading_head = True
        self.head_bytes = 0
        self._disarm()

    def _arm(self, seconds: float, timed_out: Callable[[], None]) -> None:
        self.deadline = self.loop.call_later(seconds, timed_out)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _late(self, seconds: float, timed_out: Callable[[], None]) -> bool:
        """Whether the client is late, rather than the server not reading: uvicorn pauses reading while a
        pipelined request waits for the one before it, or while the app has not taken a body's first 64 KiB.
        Then the deadline starts again."""
        self.deadline = None
        if self.transport.is_closing():
            return False
        if self.flow.read_paused:
            self._arm(seconds, timed_out)
            return False
        return True

    def _head_timed_out(self) -> None:
        if not self._late(self.limits.head_timeout_seconds, self._head_timed_out):
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A slow head behind a request still being answered: let that answer finish, then close.
            self.cycle.keep_alive = False
            return
        if self.head_bytes == 0:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        self._refuse(
            408,
            f"The request's headers did not arrive within {self.limits.head_timeout_seconds:g} s "
            "(SCIMLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS).",
        )

    def _body_timed_out(self) -> None:
        if not self._late(self.limits.body_timeout_seconds, self._body_timed_out):
            return
        if self.cycle.response_started:
            # The app answered (or is answering) without waiting for the body: nothing more to say.
            self.transport.close()
            return
        # The app waits for the body; once the connection is lost, it reads a disconnect and gives up.
        self._refuse(
            408,
            f"The request's body did not arrive within {self.limits.body_timeout_seconds:g} s "
            "(SCIMLEDGER_REQUEST_BODY_TIMEOUT_SECONDS).",
        )

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with a SCIM error and close: the request is never parsed further, nor run."""
        self.refused = True
        self.logger.info("Request refused with %d: %s", status, detail)
        body = msgspec.json.encode(
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": str(status),
                "detail": detail,
            }
        )
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/scim+json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self._disarm()
        self.transport.write(b"".join(content))
        self.transport.close()


def bounded_protocol(limits: EdgeLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with `limits` (uvicorn builds one instance per connection)."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
