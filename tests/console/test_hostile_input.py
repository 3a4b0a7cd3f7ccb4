"""The console under odd and hostile input: answered in words (4xx), never a 500; and a session cookie that
stays Secure behind a proxy that terminates TLS. Found by a review of the console."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.console.audit_story import okta_history
from tests.console.helpers import console_org, csrf_of, sign_in


@pytest.mark.parametrize(
    "page", ["/console/audit/review", "/console/audit/review.csv", "/console/audit/timeline"]
)
async def test_a_to_bound_at_the_calendars_start_is_a_400_not_a_500(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, page: str
) -> None:
    org = await console_org(pool)
    await sign_in(browser_like, org, "audit")
    answer = await browser_like.get(page, params={"to": "0001-01-01T00:00"})
    assert answer.status_code == 400, answer.status_code


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-01-01T00:00", "9999-12-31T23:59"),  # months/years walk past year 9999
        ("0001-01-01T00:00", "2026-01-01T00:00"),  # years rounded down to year 0
        ("9999-12-01T00:00", "9999-12-31T23:59"),  # weeks/days walk past year 9999
    ],
)
async def test_a_timeline_window_at_the_calendars_ends_is_drawn_or_refused_not_a_500(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, start: str, end: str
) -> None:
    org = await console_org(pool)
    story = await okta_history(browser_like, pool, org)
    await sign_in(browser_like, org, "audit")
    answer = await browser_like.get(
        "/console/audit/timeline", params={"group": story.admin_group, "from": start, "to": end}
    )
    assert answer.status_code in (200, 400), answer.status_code


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/console/setup/tokens", {"label": "Okta\x00prod"}),
        ("/console/users", {"user_name": "ann\x00@example.com"}),
        ("/console/users", {"user_name": "ann@example.com", "given_name": "A\x00nn"}),
        ("/console/catalog/projects", {"name": "Apo\x00llo"}),
        ("/console/catalog/roles", {"name": "Vie\x00wer"}),
    ],
)
async def test_a_form_field_with_a_nul_is_refused_in_words_not_a_500(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, path: str, fields: dict[str, str]
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "admin")
    answer = await browser_like.post(path, data={"csrf_token": csrf_of(page), **fields})
    assert 400 <= answer.status_code < 500, answer.status_code


async def test_a_rename_to_a_name_with_a_nul_is_refused_in_words_not_a_500(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "admin")
    csrf = csrf_of(page)
    created = await browser_like.post(
        "/console/catalog/projects", data={"csrf_token": csrf, "name": "Apollo"}
    )
    assert created.status_code == 201
    answer = await browser_like.post(
        "/console/catalog/projects/Apollo/rename", data={"csrf_token": csrf, "name": "Apo\x00llo"}
    )
    assert 400 <= answer.status_code < 500, answer.status_code


def _cursor(listing: str, key: object) -> str:
    import base64
    import json

    raw = json.dumps({"listing": listing, "key": key}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("page", "cursor"),
    [
        # a step past int4: the driver refuses the parameter, which _storable (bigint) lets through
        ("history", ("console-group-history", {"at": "2026-01-01T00:00:00Z", "position": 1, "step": 2**40})),
        # an instant PostgreSQL cannot hold once moved to UTC
        ("history", ("console-group-history", {"at": "0001-01-01T00:00:00+14:00", "position": 1, "step": 1})),
        (
            "members",
            (
                "console-members",
                {"since": "0001-01-01T00:00:00+14:00", "user_id": "00000000-0000-0000-0000-000000000000"},
            ),
        ),
        (
            "erasure",
            (
                "console-erasure",
                {"left_at": "0001-01-01T00:00:00+14:00", "user_id": "00000000-0000-0000-0000-000000000000"},
            ),
        ),
        (
            "matrix",
            (
                "console-matrix",
                {
                    "name": "a",
                    "created": "0001-01-01T00:00:00+14:00",
                    "id": "00000000-0000-0000-0000-000000000000",
                },
            ),
        ),
    ],
)
async def test_an_altered_cursor_is_a_400_not_a_500(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, page: str, cursor: tuple[str, object]
) -> None:
    from tests.console.admin_helpers import admin_things

    org = await console_org(pool)
    things = await admin_things(pool, org.tenant.org.org_id)
    await sign_in(browser_like, org, "admin")
    path = {
        "history": f"/console/groups/{things.group_id}/history",
        "members": f"/console/groups/{things.group_id}",
        "matrix": "/console/matrix",
        "erasure": "/console/erasure",
    }[page]
    answer = await browser_like.get(path, params={"cursor": _cursor(*cursor)})
    assert answer.status_code == 400, answer.status_code


async def test_behind_a_tls_proxy_the_session_cookie_is_secure(settings: object, pool: asyncpg.Pool) -> None:
    """The documented deployment: a proxy terminates https, SCIMLEDGER_PUBLIC_URL is https, and the server
    runs with proxy_headers=False (app/cli/server.py), so the request's scheme is http and
    set_session_cookie (session.py) leaves Secure off: the session cookie may then travel over plain http."""
    import msgspec
    from asgi_lifespan import LifespanManager

    from app.http.app import create_app
    from tests.console.helpers import portal_link

    proxied = msgspec.structs.replace(settings, public_url="https://scim.example.com/scim/v2")  # type: ignore[type-var]
    org = await console_org(pool)
    async with LifespanManager(create_app(proxied)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
            url = await portal_link(client, org, "setup")
            assert url.startswith("https://scim.example.com/console/sign-in/")
            signed_in = await client.post(
                url.replace("https://scim.example.com", "http://console.test"),
                headers={"X-Forwarded-Proto": "https", "Sec-Fetch-Site": "same-origin"},
            )
    assert signed_in.status_code == 303
    assert "secure" in signed_in.headers["set-cookie"].lower()


async def test_the_management_apis_altered_members_cursor_is_a_400_not_a_500(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The same root cause as the console's (app/http/api/edge.py `_storable` checks ints against bigint and
    strings for U+0000, but not instants that leave years 1-9999 in UTC), at GET .../groups/{id}/members."""
    from tests.console.admin_helpers import admin_things
    from tests.console.helpers import ROOT

    org = await console_org(pool)
    things = await admin_things(pool, org.tenant.org.org_id)
    cursor = _cursor(
        "members", {"since": "0001-01-01T00:00:00+14:00", "user_id": "00000000-0000-0000-0000-000000000000"}
    )
    answer = await browser_like.get(
        f"{ROOT}/api/v1/orgs/{org.org_id}/groups/{things.group_id}/members",
        params={"cursor": cursor},
        headers=org.admin,
    )
    assert answer.status_code == 400, answer.status_code
