"""Personal data stored encrypted reads as it was written over the SCIM API: GET, filters on encrypted
attributes, PATCH (decided on the decrypted user), while the stored payloads hold none of it."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.conftest import okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def stored(pool: asyncpg.Pool, user_id: str) -> str:
    rows = await pool.fetch("SELECT payload::text FROM events WHERE stream_id = $1", uuid.UUID(user_id))
    return "\n".join(row[0] for row in rows)


async def test_get_filters_and_patch_show_the_values_the_log_stores_encrypted(
    scim: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user_name = f"{uuid.uuid4().hex[:12]}@personal-api.example"
    created = await scim.post("/Users", json=okta_user(user_name, displayName="Grace Hopper"))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    change = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "replace", "path": "displayName", "value": "Amazing Grace"},
            {"op": "replace", "path": "name.familyName", "value": "Murray"},
        ],
    }
    patched = await scim.patch(f"/Users/{user_id}", json=change)
    assert patched.status_code == 200, patched.text
    # The PATCH was applied to the decrypted user: the untouched personal values are still there.
    assert patched.json()["name"] == {"givenName": "Isaac", "familyName": "Murray"}
    assert patched.json()["emails"][0]["value"] == user_name
    for query in (
        f'userName eq "{user_name}"',
        f'emails.value eq "{user_name}"',
        'displayName eq "Amazing Grace" and name.familyName eq "Murray"',
    ):
        found = await scim.get("/Users", params={"filter": query})
        assert found.status_code == 200, found.text
        assert [resource["id"] for resource in found.json()["Resources"]] == [user_id], query
    read = (await scim.get(f"/Users/{user_id}")).json()
    assert (read["userName"], read["displayName"], read["externalId"]) == (
        user_name,
        "Amazing Grace",
        "00ujl29u0le5T6Aj10h7",
    )
    payloads = await stored(pool, user_id)
    for value in (user_name, "Grace Hopper", "Amazing Grace", "Murray", "Isaac", "00ujl29u0le5T6Aj10h7"):
        assert value not in payloads
    assert "$erasable" in payloads
