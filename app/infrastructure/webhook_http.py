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
import logging
import socket
import time
from urllib.parse import urlsplit

import httpx
import msgspec

from domain.errors import InvalidWebhookUrl

log = logging.getLogger("scimledger.webhooks")

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


# IPv6 prefixes whose addresses carry an IPv4 address in their low 32 bits, which a translator or tunnel on
# the way may deliver to: NAT64 (RFC 6052), IPv4-compatible (::/96, deprecated) and SIIT's IPv4-translated
# (::ffff:0:0/96). `ipaddress` calls them all global, so `::127.0.0.1` would pass unchecked.
_LOW_32_BITS_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that `address` stands for, if it is one of the forms embedding one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1
    if address.sixtofour is not None:
        return address.sixtofour  # 2002::/16, the IPv4 address in bits 16-48
    if int(address) > 1 and any(address in prefix for prefix in _LOW_32_BITS_PREFIXES):
        # `::` and `::1` are in ::/96 but are IPv6's own unspecified and loopback, judged as such below.
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why webhooks may not reach `address`, or None if they may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
        if address.is_site_local:  # fec0::/10: deprecated, but still routed inside some networks
            return "site-local"
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
                # The owner sees the delivery log: naming the address there would tell anyone with an admin
                # token what internal names resolve to. The detail is for our own log only.
                log.warning("webhook to %s refused: it resolves to %s, a %s address", host, address, reason)
                raise RefusedAddress(f"{host} resolves to a non-public address: refused")
    return str(addresses[0])


class WebhookSender:
    """POSTs one endpoint's signed bodies: one per endpoint task, closed with it.

    Each endpoint delivers in order, one request at a time, so it needs one connection, and it gets its own:
    with a client shared by all endpoints, one tenant's receivers that never answer would hold the shared
    pool's connections, and another tenant's attempts would spend their timeout waiting for one. The
    connection is kept alive between deliveries, and dropped (a new client) when the URL's origin changes:
    since the request goes to the checked address, a connection is only reused for the host it was opened for,
    never for another name on the same address (whose TLS certificate it was not checked against).
    """

    def __init__(self, timeout_seconds: float, allow_private: bool) -> None:
        self._timeout = timeout_seconds
        self._allow_private = allow_private
        self._addresses: dict[tuple[str, int], tuple[str, float]] = {}
        self._client: httpx.AsyncClient | None = None
        self._origin: tuple[str, str, int] | None = None

    async def aclose(self) -> None:
        client, self._client, self._origin = self._client, None, None
        if client is not None:
            await client.aclose()

    async def _client_for(self, origin: tuple[str, str, int]) -> httpx.AsyncClient:
        if self._client is not None and self._origin == origin:
            return self._client
        await self.aclose()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            # One at a time: the pool never makes an attempt wait (a connection to an address the host no
            # longer resolves to, idle, is closed to make room for the new one).
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._origin = origin
        return self._client

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
        """`checked_address`, remembered for ADDRESS_SECONDS: resolving runs in a thread, and an endpoint's
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
        client = await self._client_for((parts.scheme, host.lower(), port))
        async with client.stream(
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
