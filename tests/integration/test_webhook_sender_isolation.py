"""One tenant's slow receivers do not fail another tenant's webhook deliveries (review of 1be3596).

The dispatcher gives each endpoint task a WebhookSender of its own (one connection, kept alive): there is no
shared pool for a tenant's receivers that never answer to hold, so another's attempt never spends its timeout
waiting for a connection.
"""

from __future__ import annotations

import asyncio

from app.infrastructure.webhook_http import WebhookSender


async def _tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # reads the request, never answers; done when the sender gives up and hangs up
    writer.close()


async def _healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def test_slow_receivers_of_one_org_do_not_fail_another_orgs_delivery() -> None:
    tarpit = await asyncio.start_server(_tarpit, "127.0.0.1", 0)
    healthy = await asyncio.start_server(_healthy, "127.0.0.1", 0)
    tarpit_port = tarpit.sockets[0].getsockname()[1]
    healthy_port = healthy.sockets[0].getsockname()[1]
    stop = asyncio.Event()

    async def attacker(n: int) -> None:
        # Org A's endpoint tasks, each as the dispatcher runs it (a sender of its own): one delivery after
        # another to a receiver that never answers.
        sender = WebhookSender(timeout_seconds=2.0, allow_private=True)
        try:
            while not stop.is_set():
                await sender.post(f"http://127.0.0.1:{tarpit_port}/{n}", b"{}", {})
        finally:
            await sender.aclose()

    # Org B's endpoint task: a healthy receiver that answers at once.
    sender = WebhookSender(timeout_seconds=2.0, allow_private=True)
    try:
        # 200: more than the 100 connections the one shared client had (and than an org may now have active).
        workers = [asyncio.create_task(attacker(n)) for n in range(200)]
        await asyncio.sleep(2.5)
        answers = [await sender.post(f"http://127.0.0.1:{healthy_port}/hook", b"{}", {}) for _ in range(3)]
        stop.set()
        await asyncio.gather(*workers)
        # Failed on 1be3596: PoolTimeout / "no answer within 2 s", recorded as B's failed attempts.
        assert all(answer.succeeded for answer in answers), answers
    finally:
        await sender.aclose()
        tarpit.close()
        healthy.close()
        await tarpit.wait_closed()
        await healthy.wait_closed()


async def test_an_endpoint_keeps_its_connection_alive_and_opens_a_new_one_for_a_new_host() -> None:
    connections = 0

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await reader.readuntil(b"\r\n\r\n"):
            await reader.readexactly(2)  # the body, b"{}"
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await keep_alive(reader, writer)
        except asyncio.IncompleteReadError:
            pass  # the sender hung up
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = WebhookSender(timeout_seconds=2.0, allow_private=True)
    headers = {"content-type": "application/json"}
    try:
        for _ in range(3):
            assert (await sender.post(f"http://127.0.0.1:{port}/a", b"{}", headers)).succeeded
        assert connections == 1
        # Another name for the same address: its own connection, never the first host's.
        assert (await sender.post(f"http://localhost:{port}/a", b"{}", headers)).succeeded
        assert connections == 2
    finally:
        await sender.aclose()
        server.close()
        await server.wait_closed()
