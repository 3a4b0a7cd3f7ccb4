"""The console in a real browser: `scimledger`'s app served by uvicorn on a loopback port (with the headers
`serve` sends, its Content-Security-Policy included), driven by Playwright through Debian's Chromium.

Playwright is pointed at /usr/bin/chromium (`make test` installs Debian's package when it is missing) and
never downloads a browser of its own. Each test gets a fresh browser context (no cookies), and fails if a page
logged an error to the console or threw."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import msgspec
import pytest
import uvicorn
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, ConsoleMessage, Error, Page, Response, async_playwright

from app.http.app import create_app
from app.http.middleware import SECURITY_HEADERS
from app.infrastructure.settings import Settings

CHROMIUM = os.environ.get("SCIMLEDGER_CHROMIUM", "/usr/bin/chromium")
# axe-core's impacts that fail a page: the ones that keep someone from using it.
BLOCKING_IMPACTS = ("serious", "critical")


@dataclass(frozen=True)
class ConsoleServer:
    root: str


@pytest.fixture(scope="session")
def console_server(settings: Settings) -> Iterator[ConsoleServer]:
    """The app under uvicorn, in a thread of its own (its own event loop and pool), on a free port."""
    served = msgspec.structs.replace(settings, host="127.0.0.1", port=0)
    config = uvicorn.Config(
        create_app(served),
        host="127.0.0.1",
        port=0,
        headers=SECURITY_HEADERS,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the console's server stopped while starting"
        assert time.monotonic() < deadline, "the console's server did not start within 30 s"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield ConsoleServer(f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        await launched.close()


@dataclass
class PageProblems:
    """What a page logged as an error or threw, for the test to fail on. A page the test opened that answers
    an error status (a used link's 410) is what the test asked for, though Chromium logs it; a stylesheet,
    script or image that fails is not."""

    messages: list[str] = field(default_factory=list)
    documents: set[str] = field(default_factory=set)

    def response(self, response: Response) -> None:
        if response.request.resource_type == "document":
            self.documents.add(response.url)

    def console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if (
            message.text.startswith("Failed to load resource")
            and message.location.get("url") in self.documents
        ):
            return
        self.messages.append(f"console: {message.text} at {message.location}")

    def thrown(self, error: Error) -> None:
        self.messages.append(f"uncaught: {error}")


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context (no cookies, a laptop's window, a time zone other than UTC so that shown
    times are the viewer's); the test fails if any page it opened logged an error or threw."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="Europe/Paris")
    opened = await context.new_page()
    problems = PageProblems()
    context.on("response", problems.response)
    context.on("console", problems.console)
    opened.on("pageerror", problems.thrown)
    yield opened
    await context.close()
    assert problems.messages == [], "the console's pages log no errors"


async def assert_accessible(page: Page) -> None:
    """axe-core finds nothing serious or critical on the page as it stands."""
    results = await Axe().run(page)
    blocking = [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        f"{[node['target'] for node in violation['nodes']][:3]}"
        for violation in results.response["violations"]
        if violation["impact"] in BLOCKING_IMPACTS
    ]
    assert blocking == [], f"{page.url}: {blocking}"
