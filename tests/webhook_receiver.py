"""A webhook receiver over real HTTP: uvicorn on a loopback port chosen by the kernel, in a thread of its own.

Each path is one receiver. It verifies every request's signature with `standardwebhooks` against the
secrets it was given for that path, records what arrived (at arrival, before answering), and answers as
scripted: a list of answers consumed one per request ("503", "slow": longer than any test timeout), then
`default`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Receipt:
    path: str
    webhook_id: str
    body: bytes
    headers: dict[str, str]
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


@dataclass
class _Script:
    answers: list[str] = field(default_factory=list)
    default: str = "200"
    delay: float = 0.0


class Receiver:
    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.secrets: dict[str, list[str]] = defaultdict(list)
        self._scripts: dict[str, _Script] = defaultdict(_Script)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(
        self, path: str, answers: list[str] | None = None, default: str = "200", delay: float = 0.0
    ) -> None:
        with self._lock:
            self._scripts[path] = _Script(list(answers or []), default, delay)

    def received(self, path: str) -> list[Receipt]:
        with self._lock:
            return [receipt for receipt in self.receipts if receipt.path == path]

    def first_receipts(self, path: str) -> list[str]:
        """The distinct webhook-ids received at `path`, in the order they first arrived."""
        seen: dict[str, None] = {}
        for receipt in self.received(path):
            seen.setdefault(receipt.webhook_id, None)
        return list(seen)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        with self._lock:
            verified = self._verified(path, body, headers)
            self.receipts.append(Receipt(path, headers.get("webhook-id", ""), body, headers, verified))
            script = self._scripts[path]
            answer = script.answers.pop(0) if script.answers else script.default
            delay = script.delay
        if delay:
            await asyncio.sleep(delay)
        if answer == "slow":
            # Longer than any test's timeout; the server's shutdown ends it.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)
            return
        await send({"type": "http.response.start", "status": int(answer), "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def _verified(self, path: str, body: bytes, headers: dict[str, str]) -> bool:
        secrets = self.secrets.get(path, [])
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def start(self) -> Receiver:
        config = uvicorn.Config(self, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
