"""The setup page: this deployment's values in the integration's steps, and the connection's status in words."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import okta_user
from tests.console.helpers import console_org, sign_in


async def test_the_steps_carry_this_deployments_scim_base_url_and_group_prefix(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "setup")
    assert "http://console.test/scim/v2" in page
    assert "Statsig-&lt;Project&gt;-&lt;Role&gt;" in page
    assert "Link Group" in page


async def test_the_status_says_when_okta_last_called_and_what_it_got_wrong_naming_the_person(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org = await console_org(pool)
    page = await sign_in(browser_like, org, "setup")
    assert "has not called yet" in page
    assert "No failed request" in page

    scim = org.tenant.headers
    created = await browser_like.post("/scim/v2/Users", json=okta_user("jane@acme.test"), headers=scim)
    assert created.status_code == 201
    duplicate = await browser_like.post("/scim/v2/Users", json=okta_user("jane@acme.test"), headers=scim)
    assert duplicate.status_code == 409

    page = (await browser_like.get("/console/setup")).text
    assert "last called" in page
    assert "jane@acme.test" in page
    assert "already exists" in page
    assert duplicate.headers["x-request-id"] in page
