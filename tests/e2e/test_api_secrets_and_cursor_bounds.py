"""Two defects found in review of the management API (issue 21), each test failing before its fix:
- a POST that reveals a secret (a token issued, a webhook's signing secret made or rotated) and carries an
  Idempotency-Key must not leave the secret in clear in idempotency_keys; its replay answers the rest of the
  response, the secret null, and says the secret was withheld;
- a cursor holding a number past what PostgreSQL stores (feed: tx an xid8, position a bigint; listings: any
  bigint key) is refused (400) as any altered cursor is, not sent to the database to fail (500)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.http.api.edge import SECRET_WITHHELD
from tests.e2e.test_api_foundation import API, managed


@pytest.fixture
async def api(asgi_app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=API) as client:
        yield client


async def _in_idempotency_keys(pool: asyncpg.Pool, secret: str) -> int:
    async with pool.acquire() as connection:
        found: int = await connection.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE position($1::bytea IN body) > 0", secret.encode()
        )
    return found


async def test_issued_token_is_not_kept_in_clear_and_its_replay_withholds_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    request = {
        "url": f"/orgs/{org.org_id}/tokens",
        "json": {"scope": "admin", "label": "ci"},
        "headers": {**org.admin, "Idempotency-Key": "k-" + uuid.uuid4().hex},
    }
    response = await api.post(**request)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    assert token
    assert SECRET_WITHHELD.lower() not in response.headers
    assert await _in_idempotency_keys(pool, token) == 0, "the token, kept hashed, sits in clear"

    replay = await api.post(**request)  # type: ignore[arg-type]
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers[SECRET_WITHHELD] == "token"
    # The same token, named, so that a client that lost the first answer can revoke it.
    assert replay.json() == {**response.json(), "token": None}
    assert token not in replay.text


async def test_webhook_secret_is_not_kept_in_clear_and_its_replay_withholds_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    hooks = f"/orgs/{org.org_id}/webhooks"
    response = await api.post(hooks, json={"url": "https://example.com/hook"}, headers={**org.admin, **key})
    assert response.status_code == 201, response.text
    secret = response.json()["secret"]
    assert await _in_idempotency_keys(pool, secret) == 0, "the signing secret, kept encrypted, sits in clear"

    replay = await api.post(hooks, json={"url": "https://example.com/hook"}, headers={**org.admin, **key})
    assert (replay.status_code, replay.headers[SECRET_WITHHELD]) == (201, "secret")
    assert replay.json() == {**response.json(), "secret": None}


async def test_rotated_webhook_secret_is_not_kept_in_clear_and_its_replay_withholds_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    created = await api.post(
        f"/orgs/{org.org_id}/webhooks", json={"url": "https://example.com/h"}, headers=org.admin
    )
    rotate = f"/orgs/{org.org_id}/webhooks/{created.json()['webhook']['id']}/rotate"
    headers = {**org.admin, "Idempotency-Key": "k-" + uuid.uuid4().hex}
    response = await api.post(rotate, headers=headers)
    assert response.status_code == 200, response.text
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    assert await _in_idempotency_keys(pool, secret) == 0

    replay = await api.post(rotate, headers=headers)
    assert (replay.status_code, replay.headers[SECRET_WITHHELD]) == (200, "secret")
    assert replay.json() == {"secret": None}


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("raw", [b"[1,18446744073709551616,0]", b"[1,0,9223372036854775808]"])
async def test_out_of_range_feed_cursor_is_400_not_500(
    api: httpx.AsyncClient, pool: asyncpg.Pool, raw: bytes
) -> None:
    org = await managed(pool)
    response = await api.get(f"/orgs/{org.org_id}/events", params={"after": _cursor(raw)}, headers=org.admin)
    assert response.status_code == 400, response.text


async def test_feed_cursor_at_the_columns_bounds_is_accepted(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    raw = b"[1,%d,%d]" % (2**64 - 1, 2**63 - 1)
    response = await api.get(f"/orgs/{org.org_id}/events", params={"after": _cursor(raw)}, headers=org.admin)
    assert response.status_code == 200, response.text


def _listing_cursor(listing: str, key: bytes) -> str:
    return _cursor(b'{"listing":"%s","key":%s}' % (listing.encode(), key))


@pytest.mark.parametrize(
    ("path", "listing", "key"),
    [
        ("users", "users", b'{"sort_key":9223372036854775808}'),
        ("users", "users", b'{"sort_key":-9223372036854775809}'),
        # A text key holding U+0000, which PostgreSQL cannot take either.
        ("groups", "groups", b'{"display_name":"a\\u0000b","id":"%s"}' % str(uuid.uuid4()).encode()),
    ],
)
async def test_out_of_range_listing_cursor_is_400_not_500(
    api: httpx.AsyncClient, pool: asyncpg.Pool, path: str, listing: str, key: bytes
) -> None:
    org = await managed(pool)
    response = await api.get(
        f"/orgs/{org.org_id}/{path}", params={"cursor": _listing_cursor(listing, key)}, headers=org.admin
    )
    assert response.status_code == 400, response.text


async def test_listing_cursor_at_the_bigint_bounds_is_accepted(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    for sort_key in (2**63 - 1, -(2**63)):
        cursor = _listing_cursor("users", b'{"sort_key":%d}' % sort_key)
        response = await api.get(f"/orgs/{org.org_id}/users", params={"cursor": cursor}, headers=org.admin)
        assert response.status_code == 200, response.text


async def test_out_of_range_delivery_cursor_is_400_not_500(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await managed(pool)
    created = await api.post(
        f"/orgs/{org.org_id}/webhooks", json={"url": "https://example.com/h"}, headers=org.admin
    )
    hook = created.json()["webhook"]["id"]
    response = await api.get(
        f"/orgs/{org.org_id}/webhooks/{hook}/deliveries",
        params={"cursor": _listing_cursor("deliveries", b'{"id":9223372036854775808}')},
        headers=org.admin,
    )
    assert response.status_code == 400, response.text
