"""`make screenshots`: the console's main pages as the README shows them, from a demonstration organization.

A scratch database on the server scimledger uses (the embedded one unless DATABASE_URL is set), the app served
by uvicorn on a loopback port with its runner, a small organization provisioned the way Okta provisions one
(over SCIM: users, linked groups and their members, a deactivation, a duplicate that fails), a removal in the
app, then Chromium (Debian's, through Playwright) signed in with each intent's link, one PNG a page into
docs/console/.

    .venv/bin/python -m tests.browser.screenshots
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn
from playwright.async_api import Page, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from scratch import scratch_database

from app.http.app import create_app
from app.http.middleware import SECURITY_HEADERS
from app.infrastructure.database import database_url
from app.infrastructure.migrate import migrate
from app.infrastructure.settings import Settings
from app.services import tenancy
from eventstore.pool import create_pool
from tests.browser.conftest import CHROMIUM

OUT = Path(__file__).resolve().parents[2] / "docs" / "console"
PEOPLE = [
    ("ada.lovelace", "Ada", "Lovelace"),
    ("grace.hopper", "Grace", "Hopper"),
    ("alan.turing", "Alan", "Turing"),
    ("katherine.johnson", "Katherine", "Johnson"),
    ("edsger.dijkstra", "Edsger", "Dijkstra"),
    ("barbara.liskov", "Barbara", "Liskov"),
    ("donald.knuth", "Donald", "Knuth"),
    ("margaret.hamilton", "Margaret", "Hamilton"),
    ("ken.thompson", "Ken", "Thompson"),
    ("frances.allen", "Frances", "Allen"),
]


def okta_user(login: str, given: str, family: str) -> dict[str, Any]:
    email = f"{login}@example.com"
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": True, "value": email, "type": "work"}],
        "displayName": f"{given} {family}",
        "active": True,
    }


def serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, headers=SECURITY_HEADERS, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


async def demonstration(root: str, url: str) -> dict[str, str]:
    """The organization, provisioned as Okta would; its ids and the host app's admin token."""
    pool = await create_pool(url, min_size=1, max_size=2)
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, "Acme Robotics")
        _, scim_token = await tenancy.issue_token(connection, org.org_id, "scim", "Okta production")
        _, admin_token = await tenancy.issue_token(connection, org.org_id, "admin", "Acme backend")
    await pool.close()
    admin = {"Authorization": f"Bearer {admin_token}"}
    scim = {"Authorization": f"Bearer {scim_token}"}
    api = f"{root}/api/v1/orgs/{org.org_id}"
    began = datetime.datetime.now(datetime.UTC)
    async with httpx.AsyncClient(timeout=30) as client:
        for project in ("Atlas", "Borealis", "Cygnus"):
            assert (
                await client.post(f"{api}/projects", json={"name": project}, headers=admin)
            ).status_code == 201
        for role in ("Viewer", "Editor", "Admin"):
            assert (await client.post(f"{api}/roles", json={"name": role}, headers=admin)).status_code == 201
        ids = []
        for person in PEOPLE:
            created = await client.post(f"{root}/scim/v2/Users", json=okta_user(*person), headers=scim)
            ids.append(created.json()["id"])
        groups = (await client.get(f"{root}/scim/v2/Groups?count=100", headers=scim)).json()["Resources"]
        by_name = {group["displayName"]: group["id"] for group in groups}
        pushes = {
            "Statsig-Atlas-Editor": ids[:5],
            "Statsig-Atlas-Viewer": ids[3:9],
            "Statsig-Borealis-Admin": ids[1:3],
            "Statsig-Cygnus-Viewer": ids[6:],
        }
        for name, members in pushes.items():
            operations = [
                {"op": "add", "path": "members", "value": [{"value": member} for member in members]}
            ]
            patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
            answer = await client.patch(f"{root}/scim/v2/Groups/{by_name[name]}", json=patch, headers=scim)
            assert answer.status_code in (200, 204), answer.text
            await asyncio.sleep(2)  # so that the timeline's bars start at visibly different instants
        leave = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": f'members[value eq "{ids[4]}"]'}],
        }
        await client.patch(
            f"{root}/scim/v2/Groups/{by_name['Statsig-Atlas-Editor']}", json=leave, headers=scim
        )
        deactivate = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        }
        await client.patch(f"{root}/scim/v2/Users/{ids[8]}", json=deactivate, headers=scim)
        await client.post(f"{root}/scim/v2/Users", json=okta_user(*PEOPLE[0]), headers=scim)  # a duplicate
        await client.delete(f"{api}/users/{ids[9]}", headers=admin)  # removed in the app
    await asyncio.sleep(2)  # the runner's reactors record their follow-ups
    return {
        "org_id": str(org.org_id),
        "admin": admin_token,
        "user": ids[3],
        "group": by_name["Statsig-Atlas-Editor"],
        # The demonstration's whole history, minutes long: the timeline's window.
        "window": f"from={began:%Y-%m-%dT%H:%M:%S}&to={datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=5):%Y-%m-%dT%H:%M:%S}",
    }


async def sign_in(page: Page, root: str, ids: dict[str, str], intent: str) -> None:
    async with httpx.AsyncClient() as client:
        link = await client.post(
            f"{root}/api/v1/orgs/{ids['org_id']}/portal-links",
            json={"intent": intent, "label": "Dana (IT)"},
            headers={"Authorization": f"Bearer {ids['admin']}"},
        )
    await page.goto(link.json()["url"])
    await page.get_by_role("button", name="Sign in").click()


async def shoot(page: Page, root: str, path: str, name: str) -> None:
    await page.goto(root + path)
    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print(f"docs/console/{name}.png  {path}", flush=True)


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server_url = await asyncio.to_thread(database_url, Settings.from_env())
    async with scratch_database(server_url) as url:
        connection_pool = await create_pool(url, min_size=1, max_size=1)
        async with connection_pool.acquire() as connection:
            await migrate(connection)
        await connection_pool.close()
        settings = msgspec.structs.replace(
            Settings.from_env(), database_url=url, worker=True, runner_poll_seconds=0.2
        )
        server, thread, root = serve(settings)
        try:
            ids = await demonstration(root, url)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM)
                laptop = await browser.new_context(
                    viewport={"width": 1280, "height": 800}, timezone_id="Europe/Paris"
                )
                page = await laptop.new_page()
                await sign_in(page, root, ids, "admin")
                for path, name in [
                    ("/console/setup", "setup"),
                    ("/console/users", "users"),
                    (f"/console/users/{ids['user']}", "user"),
                    ("/console/matrix", "matrix"),
                    (f"/console/groups/{ids['group']}", "group"),
                    ("/console/catalog", "catalog"),
                ]:
                    await shoot(page, root, path, name)
                auditor = await (
                    await browser.new_context(
                        viewport={"width": 1280, "height": 800}, timezone_id="Europe/Paris"
                    )
                ).new_page()
                await sign_in(auditor, root, ids, "audit")
                for path, name in [
                    ("/console/audit", "audit-seals"),
                    ("/console/audit/history", "audit-history"),
                    ("/console/audit/review", "audit-review"),
                    (f"/console/audit/timeline?group={ids['group']}&{ids['window']}", "audit-timeline"),
                    ("/console/audit/as-of", "audit-as-of"),
                ]:
                    await shoot(auditor, root, path, name)
                phone = await (
                    await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
                ).new_page()
                await sign_in(phone, root, ids, "admin")
                await shoot(phone, root, "/console/matrix", "phone-matrix")
                await browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
