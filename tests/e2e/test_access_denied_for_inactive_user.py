"""The access check of now denies at once a user Okta deactivated or deleted, or an admin removed from the
organization, without waiting for the runner's reactor to record their removal from the group (unbounded
while the runner is down or behind); a check at an instant keeps the audit's answer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from app.services.container import Services
from tests.e2e.test_access_api import ADMIN, PATCH_OP, SCIM, Granted, api, granted  # noqa: F401 (fixtures)


async def check(client: httpx.AsyncClient, target: Granted, **extra: str) -> dict[str, Any]:
    response = await client.get(target.path, params={**target.ids, **extra}, headers=target.admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def grant_since(client: httpx.AsyncClient, target: Granted) -> str:
    """The instant the grant was given, asserting it is held now and usable."""
    body = await check(client, target)
    assert (body["allowed"], body["reason"]) == (True, None), body
    return str(body["since"])


async def test_deactivated_user_is_not_allowed(
    api: httpx.AsyncClient,  # noqa: F811
    granted: Granted,  # noqa: F811
) -> None:
    since = await grant_since(api, granted)
    scim = {"Authorization": f"Bearer {granted.tenant.token}"}
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    response = await api.patch(f"{SCIM}/Users/{granted.user_id}", json=deactivate, headers=scim)
    assert response.status_code in (200, 204), response.text
    answer = await check(api, granted)
    assert (answer["allowed"], answer["reason"], answer["since"]) == (False, "user_inactive", None), answer
    by_name = await check(api, granted, user=granted.user_name)
    assert by_name == answer
    # The past is the audit's: the grant held then, and the group still holds them until the reactor runs.
    then = await check(api, granted, at=since)
    assert (then["allowed"], then["reason"]) == (True, None), then


async def test_deleted_user_is_not_allowed(
    api: httpx.AsyncClient,  # noqa: F811
    granted: Granted,  # noqa: F811
) -> None:
    since = await grant_since(api, granted)
    scim = {"Authorization": f"Bearer {granted.tenant.token}"}
    response = await api.delete(f"{SCIM}/Users/{granted.user_id}", headers=scim)
    assert response.status_code == 204, response.text
    assert (await api.get(f"{SCIM}/Users/{granted.user_id}", headers=scim)).status_code == 404
    answer = await check(api, granted)
    assert answer["allowed"] is False, answer
    assert answer["reason"] == "user_deleted", answer
    assert (await check(api, granted, at=since))["allowed"] is True


async def test_user_removed_from_the_organization_is_not_allowed(
    api: httpx.AsyncClient,  # noqa: F811
    granted: Granted,  # noqa: F811
    services: Services,
) -> None:
    await grant_since(api, granted)
    org_id = granted.tenant.org.org_id
    await services.users.remove_from_organization(org_id, uuid.UUID(granted.user_id), ADMIN)
    answer = await check(api, granted)
    assert answer["allowed"] is False, answer
    # The reactor has not run (the tests run no runner): the group still holds them, the check does not.
    assert answer["reason"] == "user_removed", answer
