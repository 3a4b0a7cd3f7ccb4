from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.console.helpers import ROOT


@pytest.fixture
async def browser_like(asgi_app: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as a browser does, over the ASGI app."""
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ROOT) as client:
        yield client
