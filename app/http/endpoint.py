"""What every route is built on: the Endpoint class its handlers live in, and the services it is given."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from asyncpg.pgproto.pgproto import UUID as _FastUUID
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.services.container import Services


class Endpoint(HTTPEndpoint):
    """Starlette's HTTPEndpoint, with the work that depends only on the class done once per class rather than
    on every request: which methods it answers (HTTPEndpoint lists them in __init__) and whether its handlers
    are coroutines (HTTPEndpoint inspects each one as it dispatches; here they all are). Together these were
    a tenth of a GET's time in the app."""

    _methods: ClassVar[list[str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("get", "post", "put", "patch", "delete"):
            handler = getattr(cls, name, None)
            assert handler is None or inspect.iscoroutinefunction(handler), (
                f"{cls.__name__}.{name} must be async"
            )
        probe = object.__new__(cls)
        HTTPEndpoint.__init__(probe, {"type": "http"}, _never, _never)
        cls._methods = probe._allowed_methods

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self._allowed_methods = self._methods

    async def dispatch(self) -> None:
        request = Request(self.scope, receive=self.receive, send=self.send)
        method = request.method
        handler: Callable[[Request], Awaitable[Response]] = (
            getattr(self, "get" if method == "HEAD" else method.lower())
            if method in self._allowed_methods
            else self.method_not_allowed
        )
        response = await handler(request)
        await response(self.scope, self.receive, self.send)


async def _never(*args: Any) -> Any:
    raise AssertionError("only the class's methods are read")


def parse_uuid(text: str) -> uuid.UUID:
    """An id a request names, accepting and refusing (ValueError) exactly what `uuid.UUID(text)` does, at a
    fifth of its cost: `uuid.UUID` parses in Python, and took a tenth of the access check's own work for its
    four ids. asyncpg parses in C, into its `uuid.UUID` subclass, the type of every id read from the database;
    the spellings it does not read (braces, a `urn:uuid:` prefix) are left to `uuid.UUID`."""
    try:
        return _FastUUID(text)
    except ValueError:
        return uuid.UUID(text)


def services_of(request: Request) -> Services:
    # Straight from the scope: `request.state` costs a property and a __getattr__ per call, several per request.
    services: Services = request.scope["state"]["services"]
    return services
