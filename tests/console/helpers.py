"""What the console's tests share: a sign-in link asked for as the host app asks, and a signed-in client."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg
import httpx

from app.services import tenancy
from tests.conftest import Tenant, new_tenant

ROOT = "http://console.test"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class ConsoleOrg:
    tenant: Tenant
    admin_token: str

    @property
    def org_id(self) -> str:
        return str(self.tenant.org.org_id)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


async def console_org(pool: asyncpg.Pool) -> ConsoleOrg:
    tenant = await new_tenant(pool)
    async with pool.acquire() as connection:
        _, admin = await tenancy.issue_token(connection, tenant.org.org_id, "admin", "host app")
    return ConsoleOrg(tenant, admin)


async def portal_link(client: httpx.AsyncClient, org: ConsoleOrg, intent: str, label: str = "Dana") -> str:
    """The link's URL, as the host app's backend asks for it."""
    answer = await client.post(
        f"{ROOT}/api/v1/orgs/{org.org_id}/portal-links",
        json={"intent": intent, "label": label},
        headers=org.admin,
    )
    assert answer.status_code == 201, answer.text
    url: str = answer.json()["url"]
    return url


async def sign_in(client: httpx.AsyncClient, org: ConsoleOrg, intent: str, label: str = "Dana") -> str:
    """Sign the client in with a new link; the page it lands on."""
    url = await portal_link(client, org, intent, label)
    landed = await client.post(url, follow_redirects=True)
    assert landed.status_code == 200, landed.text
    return landed.text


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, "the page has a form with the session's CSRF token"
    return found.group(1)
