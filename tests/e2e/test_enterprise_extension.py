"""The Enterprise User extension (RFC 7643 §4.3) over HTTP: PATCH in every form Okta, Entra and scim2-tester
send it, filters and sorting with and without its URN, `schemas` naming it exactly when the user has some of
it, discovery, and the events that record it."""

import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import okta_user

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def create(scim: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await scim.post("/Users", json=okta_user(f"{uuid.uuid4().hex[:8]}@example.com", **extra))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch(scim: httpx.AsyncClient, user_id: str, *operations: dict[str, Any]) -> httpx.Response:
    return await scim.patch(f"/Users/{user_id}", json={"schemas": [PATCH_OP], "Operations": list(operations)})


async def patched(scim: httpx.AsyncClient, user_id: str, *operations: dict[str, Any]) -> dict[str, Any]:
    response = await patch(scim, user_id, *operations)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (await scim.get(f"/Users/{user_id}")).json() == body, "what a PATCH answers is what GET reads"
    return body


async def test_urn_qualified_paths_add_replace_and_remove_one_attribute(scim: httpx.AsyncClient) -> None:
    user = await create(scim)
    assert user["schemas"] == [CORE]
    body = await patched(
        scim,
        user["id"],
        {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Sales"},
        {"op": "replace", "path": f"{ENTERPRISE}:manager.value", "value": "boss-1"},
        {"op": "add", "path": f"{ENTERPRISE}:employeeNumber", "value": "701984"},
    )
    assert body["schemas"] == [CORE, ENTERPRISE]
    assert body[ENTERPRISE] == {
        "employeeNumber": "701984",
        "department": "Sales",
        "manager": {"value": "boss-1"},
    }
    body = await patched(
        scim,
        user["id"],
        {"op": "remove", "path": f"{ENTERPRISE}:department"},
        {"op": "remove", "path": f"{ENTERPRISE}:manager"},
    )
    assert body[ENTERPRISE] == {"employeeNumber": "701984"}
    body = await patched(scim, user["id"], {"op": "remove", "path": f"{ENTERPRISE}:employeeNumber"})
    assert ENTERPRISE not in body
    assert body["schemas"] == [CORE], "the URN is in schemas exactly when the user has extension data"


async def test_the_extensions_urn_as_the_path_merges_on_add_and_replace_and_remove_unassigns_it_all(
    scim: httpx.AsyncClient,
) -> None:
    user = await create(scim, **{ENTERPRISE: {"costCenter": "4130", "division": "Theme Park"}})
    assert user["schemas"] == [CORE, ENTERPRISE]
    body = await patched(
        scim,
        user["id"],
        {
            "op": "add",
            "path": ENTERPRISE,
            "value": {"schemas": [ENTERPRISE], "department": "Tour Operations"},
        },
    )
    assert body[ENTERPRISE] == {
        "costCenter": "4130",
        "division": "Theme Park",
        "department": "Tour Operations",
    }
    body = await patched(
        scim,
        user["id"],
        {"op": "replace", "path": ENTERPRISE, "value": {"division": "Rides", "manager": {"value": "m-2"}}},
    )
    assert body[ENTERPRISE] == {
        "costCenter": "4130",
        "division": "Rides",
        "department": "Tour Operations",
        "manager": {"value": "m-2"},
    }
    body = await patched(scim, user["id"], {"op": "remove", "path": ENTERPRISE})
    assert ENTERPRISE not in body
    assert body["schemas"] == [CORE]


async def test_entras_pathless_forms_with_the_urn_in_the_key(scim: httpx.AsyncClient) -> None:
    user = await create(scim)
    body = await patched(scim, user["id"], {"op": "Replace", "value": {f"{ENTERPRISE}:department": "Sales"}})
    assert body[ENTERPRISE] == {"department": "Sales"}
    body = await patched(
        scim,
        user["id"],
        {"op": "replace", "value": {ENTERPRISE: {"organization": "Universal", "manager": {"value": "m-9"}}}},
    )
    assert body[ENTERPRISE] == {
        "organization": "Universal",
        "department": "Sales",
        "manager": {"value": "m-9"},
    }


async def test_a_bad_extension_value_is_refused_and_nothing_of_the_request_applies(
    scim: httpx.AsyncClient,
) -> None:
    user = await create(scim, **{ENTERPRISE: {"department": "Sales"}})
    for operations in (
        [
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "add", "path": ENTERPRISE, "value": "Ops"},
        ],
        [
            {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Ops"},
            {"op": "add", "path": f"{ENTERPRISE}:nope", "value": 1},
        ],
        [{"op": "add", "path": f"{ENTERPRISE}:department", "value": {"name": "Ops"}}],
    ):
        response = await patch(scim, user["id"], *operations)
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] in ("invalidValue", "invalidPath")
        assert "department" in response.json()["detail"] or ENTERPRISE in response.json()["detail"]
    assert (await scim.get(f"/Users/{user['id']}")).json() == user


async def test_filters_and_sorting_take_the_full_urn_and_the_short_name(scim: httpx.AsyncClient) -> None:
    department = f"Dept {uuid.uuid4().hex[:6]}"
    names = {}
    for employee_number in ("3", "1", "2"):
        created = await create(
            scim,
            **{
                ENTERPRISE: {
                    "department": department,
                    "employeeNumber": employee_number,
                    "manager": {"value": f"m{employee_number}"},
                }
            },
        )
        names[created["userName"]] = employee_number
    await create(scim, **{ENTERPRISE: {"department": "Elsewhere"}})

    async def listed(**params: str) -> list[str]:
        response = await scim.get("/Users", params=params)
        assert response.status_code == 200, response.text
        return [resource[ENTERPRISE]["employeeNumber"] for resource in response.json()["Resources"]]

    for filter_text in (
        f'{ENTERPRISE}:department eq "{department}"',
        f'department eq "{department.upper()}"',
    ):
        for sort_by in (f"{ENTERPRISE}:employeeNumber", "employeeNumber"):
            assert await listed(filter=filter_text, sortBy=sort_by) == ["1", "2", "3"]
            assert await listed(filter=filter_text, sortBy=sort_by, sortOrder="descending") == ["3", "2", "1"]
    assert await listed(filter=f'department eq "{department}" and manager.value eq "m2"') == ["2"]
    assert await listed(filter=f'{ENTERPRISE}:manager.value eq "m3" and department eq "{department}"') == [
        "3"
    ]


async def test_attribute_selection_takes_the_whole_extension(scim: httpx.AsyncClient) -> None:
    user = await create(scim, **{ENTERPRISE: {"department": "Sales"}})
    selected = (await scim.get(f"/Users/{user['id']}", params={"attributes": ENTERPRISE})).json()
    assert selected == {"schemas": [CORE, ENTERPRISE], "id": user["id"], ENTERPRISE: {"department": "Sales"}}
    excluded = (await scim.get(f"/Users/{user['id']}", params={"excludedAttributes": ENTERPRISE})).json()
    assert ENTERPRISE not in excluded
    assert excluded["userName"] == user["userName"]
    short = (await scim.get(f"/Users/{user['id']}", params={"attributes": "department"})).json()
    assert short[ENTERPRISE] == {"department": "Sales"}


async def test_the_managers_display_name_is_read_only_and_not_kept(scim: httpx.AsyncClient) -> None:
    manager = {"value": "m-1", "$ref": "https://idp.example/Users/m-1", "displayName": "Big Boss"}
    user = await create(scim, **{ENTERPRISE: {"manager": manager}})
    assert user[ENTERPRISE] == {"manager": {"value": "m-1", "$ref": "https://idp.example/Users/m-1"}}
    refused = await patch(
        scim, user["id"], {"op": "replace", "path": f"{ENTERPRISE}:manager.displayName", "value": "X"}
    )
    assert refused.status_code == 400
    assert refused.json()["scimType"] == "mutability"


async def test_discovery_lists_the_extension_and_its_attributes(
    http: httpx.AsyncClient, scim: httpx.AsyncClient
) -> None:
    schema = (await scim.get(f"/Schemas/{ENTERPRISE}")).json()
    assert schema["id"] == ENTERPRISE
    attributes = {attribute["name"]: attribute for attribute in schema["attributes"]}
    assert list(attributes) == [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    ]
    manager = {sub["name"]: sub for sub in attributes["manager"]["subAttributes"]}
    assert list(manager) == ["value", "$ref", "displayName"]
    assert manager["displayName"]["mutability"] == "readOnly"
    assert manager["$ref"]["referenceTypes"] == ["User"]
    user_type = (await scim.get("/ResourceTypes/User")).json()
    assert user_type["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    core = (await scim.get(f"/Schemas/{CORE}")).json()
    active = next(attribute for attribute in core["attributes"] if attribute["name"] == "active")
    assert "unassigned" in active["description"]


async def test_the_events_record_the_extension(scim: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    user = await create(scim, **{ENTERPRISE: {"department": "Sales"}})
    await patched(scim, user["id"], {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Ops"})
    await patched(scim, user["id"], {"op": "remove", "path": ENTERPRISE})
    rows = await pool.fetch(
        "SELECT type, payload FROM events WHERE stream_id = $1 ORDER BY version", uuid.UUID(user["id"])
    )
    payloads = [(row["type"], row["payload"]) for row in rows]
    assert payloads[0][1]["attributes"][ENTERPRISE] == {"department": "Sales"}
    assert payloads[1] == (
        "UserProfileUpdated",
        {"changed": {ENTERPRISE: {"department": "Ops"}}, "removed": []},
    )
    assert payloads[2] == ("UserProfileUpdated", {"changed": {}, "removed": [ENTERPRISE]})
