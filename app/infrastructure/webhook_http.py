"""Sending one webhook request, and never to the internal network unless allowed.

A webhook's URL is chosen by an organization's admin, and the request leaves from inside our network: without
care it would let anyone with an admin token probe the database, the cloud's metadata service
(169.254.169.254) or anything on loopback. So, unless `SCIMLEDGER_WEBHOOK_ALLOW_PRIVATE=true`:
- the URL must be https, and a literal address in it must be public (checked when the webhook is saved);
- at every delivery the host is resolved, every address it resolves to is checked, and the request connects
  to the checked address itself (the Host header and TLS's SNI and certificate check still use the name), so
  a DNS answer that changes between the check and the connection (DNS rebinding) cannot redirect it;
- redirects are not followed (a 3xx is a failed attempt): a public receiver could otherwise bounce the
  request inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx
import msgspec

from domain.errors import InvalidWebhookUrl

MAX_URL_LENGTH = 2048
MAX_ANSWER_BYTES = 64 * 1024
# How long a resolved and checked address is used before the host is resolved again.
ADDRESS_SECONDS = 30.0


class RefusedAddress(Exception):
    """The receiver's host resolves to an address webhooks may not reach."""


class Answer(msgspec.Struct, frozen=True):
    """What one attempt got: the receiver's status, or why there was none."""

    status: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def check_url(url: str, allow_private: bool) -> str:
    """`url` if a webhook may be sent to it, else InvalidWebhookUrl saying why."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"A webhook URL may be at most {MAX_URL_LENGTH} characters long.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidWebhookUrl(f"'{url}' is not a URL: {error}.") from error
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise InvalidWebhookUrl(
            f"A webhook URL must start with https:// (got '{parts.scheme}:'); plain http is allowed only with "
            "SCIMLEDGER_WEBHOOK_ALLOW_PRIVATE=true."
        )
    if not parts.hostname:
        raise InvalidWebhookUrl(f"'{url}' names no host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl(
            "A webhook URL may not carry a user name or password: it is shown in listings."
        )
    if parts.fragment:
        raise InvalidWebhookUrl("A webhook URL may not have a #fragment: it is never sent.")
    del port  # read only to validate it
    if not allow_private:
        literal = _literal_address(parts.hostname)
        if parts.hostname.lower() == "localhost" or parts.hostname.lower().endswith(".localhost"):
            raise InvalidWebhookUrl(_private_detail(parts.hostname))
        if literal is not None and refusal(literal):
            raise InvalidWebhookUrl(_private_detail(parts.hostname))
    return url


def _private_detail(host: str) -> str:
    return (
        f"'{host}' is a private, loopback or link-local address, which webhooks may not reach "
        "(unless SCIMLEDGER_WEBHOOK_ALLOW_PRIVATE=true)."
    )


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why webhooks may not reach `address`, or None if they may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    # Shared (carrier-grade NAT), multicast, reserved, unspecified: nothing a receiver lives on.
    if not address.is_global or address.is_multicast or address.is_unspecified:
        return "not public"
    return None


async def checked_address(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to for `host`: every address it resolves to checked (RefusedAddress if one is
    not allowed), and the first one returned."""
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        resolved = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in resolved]
    if not addresses:
        raise RefusedAddress(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise RefusedAddress(f"{host} resolves to {address}, a {reason} address: refused")
    return str(addresses[0])


class WebhookSender:
    """POSTs signed bodies; one per dispatcher, closed with it."""

    def __init__(self, timeout_seconds: float, allow_private: bool) -> None:
        self._timeout = timeout_seconds
        self._allow_private = allow_private
        self._addresses: dict[tuple[str, int], tuple[str, float]] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One attempt, bounded by the timeout as a whole (resolving, connecting, sending, the answer's head)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                status = await self._post(url, body, headers)
        except TimeoutError:
            return _answer(None, f"no answer within {self._timeout:g} s", started)
        except RefusedAddress as error:
            return _answer(None, str(error), started)
        except (httpx.HTTPError, OSError) as error:
            return _answer(None, f"{type(error).__name__}: {error}"[:500], started)
        return _answer(status, None if 200 <= status < 300 else f"HTTP {status}", started)

    async def _address(self, host: str, port: int) -> str:
        """`checked_address`, remembered for ADDRESS_SECONDS: resolving runs in a thread, and one endpoint's
        deliveries follow each other closely. Only checked addresses are remembered, and the connection goes to
        the one remembered, so this opens no window for DNS rebinding."""
        now = time.monotonic()
        remembered = self._addresses.get((host, port))
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        address = await checked_address(host, port, self._allow_private)
        if len(self._addresses) > 10_000:
            self._addresses.clear()
        self._addresses[(host, port)] = (address, now + ADDRESS_SECONDS)
        return address

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        parts = urlsplit(url)
        host = parts.hostname
        assert host is not None  # check_url saw to it
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._address(host, port)
        literal = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=f"{literal}:{port}").geturl()
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        async with self._client.stream(
            "POST",
            target,
            content=body,
            headers={**headers, "Host": parts.netloc.rpartition("@")[2]},
            extensions=extensions,
        ) as response:
            # The answer's body is read, up to a bound, only so that its connection can serve the next
            # delivery (one left unread is closed): a receiver cannot make us download much.
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    break
            return response.status_code


def _answer(status: int | None, error: str | None, started: float) -> Answer:
    return Answer(status, error, round((time.monotonic() - started) * 1000))
