"""Every console route, probed as the management API's are (tests/e2e/test_isolation.py): without a session
it signs in nobody, a session whose intent does not open it is refused (403), and another organization's
session reaching for this organization's ids finds nothing (404) and sees none of its data.

A route added to the console without a row in CONSOLE_ROUTES fails `test_every_console_route_is_probed`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.conftest import app_routes
from tests.console.admin_helpers import admin_things
from tests.console.audit_story import okta_history
from tests.console.helpers import ConsoleOrg, console_org, csrf_of, sign_in


@dataclass
class Owned:
    """An organization with something of each kind the console's paths name."""

    org: ConsoleOrg
    # Texts of the organization's that no other organization's page may show.
    markers: list[str]
    ids: dict[str, str]


async def owned_org(pool: asyncpg.Pool, transport: httpx.AsyncBaseTransport | None = None) -> Owned:
    org = await console_org(pool)
    admin = await admin_things(pool, org.tenant.org.org_id)
    owned = Owned(
        org,
        [str(org.tenant.token_id), *admin.markers],
        {"token_id": str(org.tenant.token_id), **admin.ids},
    )
    if transport is not None:  # a history for the audit section's pages: users and groups, their names
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
            story = await okta_history(client, pool, org)
        owned.ids.update(user_id=story.ann, group_id=story.admin_group)
        owned.markers += [story.ann, story.admin_group, "ann-", "Apollo"]
    return owned


# Console routes that need no session: signing in (the link is the credential), and the console's home,
# which sends a visitor without one to the page that says how to sign in.
OPEN = {
    ("GET", "/console/sign-in/{org}/{secret}"),
    ("POST", "/console/sign-in/{org}/{secret}"),
}

# (method, path) → the section whose intent opens it, and its path filled in with the owner's ids.
CONSOLE_ROUTES: dict[tuple[str, str], tuple[str, Callable[[Owned], str]]] = {
    ("GET", "/console"): ("any", lambda owned: "/console"),
    ("POST", "/console/sign-out"): ("any", lambda owned: "/console/sign-out"),
    ("GET", "/console/setup"): ("setup", lambda owned: "/console/setup"),
    ("POST", "/console/setup/tokens"): ("setup", lambda owned: "/console/setup/tokens"),
    ("GET", "/console/setup/tokens/{token_id}/revoke"): (
        "setup",
        lambda owned: f"/console/setup/tokens/{owned.ids['token_id']}/revoke",
    ),
    ("POST", "/console/setup/tokens/{token_id}/revoke"): (
        "setup",
        lambda owned: f"/console/setup/tokens/{owned.ids['token_id']}/revoke",
    ),
    ("GET", "/console/users"): ("admin", lambda owned: "/console/users"),
    ("POST", "/console/users"): ("admin", lambda owned: "/console/users"),
    **{
        (method, f"/console/users/{{user}}{action}"): (
            "admin",
            lambda owned, action=action: f"/console/users/{owned.ids['user']}{action}",
        )
        for method, action in (
            ("GET", ""),
            ("GET", "/remove"),
            ("POST", "/remove"),
            ("GET", "/restore"),
            ("POST", "/restore"),
            ("GET", "/erase"),
            ("POST", "/erase"),
        )
    },
    ("GET", "/console/erasure"): ("admin", lambda owned: "/console/erasure"),
    ("POST", "/console/retention"): ("admin", lambda owned: "/console/retention"),
    ("GET", "/console/matrix"): ("admin", lambda owned: "/console/matrix"),
    ("GET", "/console/groups/{group}"): ("admin", lambda owned: f"/console/groups/{owned.ids['group']}"),
    ("GET", "/console/groups/{group}/history"): (
        "admin",
        lambda owned: f"/console/groups/{owned.ids['group']}/history",
    ),
    ("GET", "/console/catalog"): ("admin", lambda owned: "/console/catalog"),
    **{
        route: ("admin", path_of)
        for kind in ("project", "role")
        for route, path_of in (
            (("POST", f"/console/catalog/{kind}s"), lambda owned, kind=kind: f"/console/catalog/{kind}s"),
            *(
                (
                    (method, f"/console/catalog/{kind}s/{{ref}}/{action}"),
                    lambda owned, kind=kind, action=action: (
                        f"/console/catalog/{kind}s/{owned.ids[kind]}/{action}"
                    ),
                )
                for method in ("GET", "POST")
                for action in ("rename", "archive")
            ),
        )
    },
    ("GET", "/console/webhooks"): ("admin", lambda owned: "/console/webhooks"),
    **{
        (method, f"/console/webhooks/{{webhook}}{action}"): (
            "admin",
            lambda owned, action=action: f"/console/webhooks/{owned.ids['webhook']}{action}",
        )
        for method, action in (("GET", ""), ("POST", "/pause"), ("POST", "/resume"))
    },
    ("GET", "/console/audit"): ("audit", lambda owned: "/console/audit"),
    ("POST", "/console/audit/verify"): ("audit", lambda owned: "/console/audit/verify"),
    ("GET", "/console/audit/history"): (
        "audit",
        lambda owned: f"/console/audit/history?user={owned.ids['user_id']}",
    ),
    ("GET", "/console/audit/review"): (
        "audit",
        lambda owned: f"/console/audit/review?user={owned.ids['user_id']}",
    ),
    ("GET", "/console/audit/review.csv"): (
        "audit",
        lambda owned: f"/console/audit/review.csv?user={owned.ids['user_id']}",
    ),
    ("GET", "/console/audit/review.json"): (
        "audit",
        lambda owned: f"/console/audit/review.json?user={owned.ids['user_id']}",
    ),
    ("GET", "/console/audit/review.zip"): ("audit", lambda owned: "/console/audit/review.zip"),
    ("GET", "/console/audit/timeline"): (
        "audit",
        lambda owned: f"/console/audit/timeline?group={owned.ids['group_id']}",
    ),
    ("GET", "/console/audit/as-of"): ("audit", lambda owned: "/console/audit/as-of?at=2100-01-01T00:00"),
}
# A session of each intent, and a section it does not open (None: it opens every section with a route).
INTENT_REFUSED = {"setup": "admin", "admin": "audit", "audit": "setup"}


def console_routes() -> set[tuple[str, str]]:
    return {(method, path) for method, path in app_routes() if path.startswith("/console")}


def test_every_console_route_is_probed() -> None:
    assert console_routes() == set(CONSOLE_ROUTES) | OPEN


@pytest.mark.parametrize("route", sorted(CONSOLE_ROUTES), ids=" ".join)
async def test_a_console_route_needs_a_session_of_its_intent_and_organization(
    asgi_app: object, pool: asyncpg.Pool, route: tuple[str, str]
) -> None:
    method, _ = route
    section, path_of = CONSOLE_ROUTES[route]
    transport = httpx.ASGITransport(app=asgi_app)  # type: ignore[arg-type]
    owner = await owned_org(pool, transport if section == "audit" else None)
    path = path_of(owner)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as anonymous:
        nobody = await anonymous.request(method, path)
        assert nobody.status_code == 401
        assert not [marker for marker in owner.markers if marker in nobody.text]

    if section != "any":
        for intent, refused_section in INTENT_REFUSED.items():
            if refused_section != section:
                continue
            async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as other_intent:
                page = await sign_in(other_intent, owner.org, intent)
                data = {"csrf_token": csrf_of(page)} if method == "POST" else None
                refused = await other_intent.request(method, path, data=data)
                assert refused.status_code == 403, (intent, refused.status_code)

        stranger = await owned_org(pool)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as other_org:
            page = await sign_in(
                other_org, stranger.org, "admin" if section in ("setup", "admin") else "audit"
            )
            data = {"csrf_token": csrf_of(page)} if method == "POST" else None
            crossed = await other_org.request(method, path, data=data)
            assert crossed.status_code in (200, 201, 400, 404), crossed.status_code
            assert not [marker for marker in owner.markers if marker in crossed.text]
