"""An organization's own extension schema over HTTP: Okta's and Entra's requests carry custom attributes,
which are validated, stored, filtered, sorted, selected and PATCHed by the org's declaration alone."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.services import tenancy
from app.services.container import Services
from app.services.org_schemas import parse
from domain.errors import DomainError
from eventstore.records import Metadata
from tests.conftest import Tenant, new_tenant, okta_user
from tests.e2e.test_users_api import CORE, ENTERPRISE, PATCH_OP, assert_scim_error

ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
# What Okta's Profile Editor sends when an attribute's "External namespace" is left as Okta proposes it.
OKTA_CUSTOM = "urn:okta:acme_app:1.0:user:custom"
ACME_ATTRIBUTES: list[dict[str, Any]] = [
    {"name": "costCode", "type": "string", "required": True, "description": "Where the cost goes"},
    {"name": "badgeNumber", "type": "integer"},
    {"name": "skills", "type": "string", "multiValued": True},
]


async def declare(
    services: Services, tenant: Tenant, urn: str = ACME, attributes: list[dict[str, Any]] | None = None
) -> int:
    document = {"id": urn, "name": "Custom", "attributes": attributes or ACME_ATTRIBUTES}
    version, _ = await services.schemas.declare(
        tenant.org.org_id, parse(json.dumps(document).encode()), Metadata(actor="admin:test")
    )
    return version


def client_of(http: httpx.AsyncClient, tenant: Tenant) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=http._transport, base_url=http.base_url, headers=tenant.headers)


async def provision(
    scim: httpx.AsyncClient, user_name: str | None = None, **extension: Any
) -> dict[str, Any]:
    body = okta_user(user_name or f"{uuid.uuid4().hex[:8]}@example.com", **extension)
    body["schemas"] = [CORE, *(key for key in extension if key.startswith("urn:"))]
    response = await scim.post("/Users", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
async def acme(scim: httpx.AsyncClient, services: Services, tenant: Tenant) -> httpx.AsyncClient:
    """A SCIM client of an organization that declared ACME's extension."""
    await declare(services, tenant)
    return scim


async def test_oktas_create_with_the_orgs_extension_stores_and_returns_it(acme: httpx.AsyncClient) -> None:
    created = await provision(acme, **{ACME: {"costCode": "CC-7", "badgeNumber": "42", "skills": ["sql"]}})
    assert created["schemas"] == [CORE, ACME]
    assert created[ACME] == {"costCode": "CC-7", "badgeNumber": 42, "skills": ["sql"]}
    fetched = (await acme.get(f"/Users/{created['id']}")).json()
    assert fetched[ACME] == created[ACME]
    assert fetched["schemas"] == [CORE, ACME]


async def test_schemas_lists_the_extension_exactly_when_the_user_has_data_under_it(
    acme: httpx.AsyncClient,
) -> None:
    created = await provision(acme)
    assert created["schemas"] == [CORE]
    assert ACME not in created


async def test_a_required_attribute_is_required_when_the_extension_is_sent_and_nothing_is_stored(
    acme: httpx.AsyncClient,
) -> None:
    user_name = f"{uuid.uuid4().hex[:8]}@example.com"
    response = await acme.post("/Users", json=okta_user(user_name, **{ACME: {"badgeNumber": 5}}))
    body = assert_scim_error(response, 400, "invalidValue")
    assert "costCode" in body["detail"]
    assert "required" in body["detail"]
    listed = (await acme.get("/Users", params={"filter": f'userName eq "{user_name}"'})).json()
    assert listed["totalResults"] == 0


async def test_a_value_of_the_wrong_type_is_refused_naming_the_attribute(acme: httpx.AsyncClient) -> None:
    response = await acme.post(
        "/Users", json=okta_user("t@example.com", **{ACME: {"costCode": "c", "badgeNumber": "many"}})
    )
    body = assert_scim_error(response, 400, "invalidValue")
    assert f"{ACME}.badgeNumber" in body["detail"]


async def test_put_replaces_the_extensions_values(acme: httpx.AsyncClient) -> None:
    created = await provision(acme, **{ACME: {"costCode": "old", "badgeNumber": 1}})
    body = okta_user(created["userName"], **{ACME: {"costCode": "new"}})
    replaced = await acme.put(f"/Users/{created['id']}", json=body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()[ACME] == {"costCode": "new"}


async def test_patch_with_a_urn_qualified_path_a_urn_keyed_object_and_entras_pathless_keys(
    acme: httpx.AsyncClient,
) -> None:
    created = await provision(acme, **{ACME: {"costCode": "a"}})
    url = f"/Users/{created['id']}"

    async def patch(*operations: dict[str, Any]) -> dict[str, Any]:
        response = await acme.patch(url, json={"schemas": [PATCH_OP], "Operations": list(operations)})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert (await patch({"op": "replace", "path": f"{ACME}:costCode", "value": "b"}))[ACME] == {
        "costCode": "b"
    }
    # Okta's pathless replace, the extension's URN as the key of an object.
    okta = await patch({"op": "replace", "value": {ACME: {"badgeNumber": 9}}})
    assert okta[ACME] == {"costCode": "b", "badgeNumber": 9}
    # Entra's: URN-qualified attribute names as keys, op capitalised.
    entra = await patch({"op": "Replace", "value": {f"{ACME}:costCode": "c", f"{ACME}:skills": ["go"]}})
    assert entra[ACME] == {"costCode": "c", "badgeNumber": 9, "skills": ["go"]}
    removed = await patch({"op": "remove", "path": f"{ACME}:badgeNumber"})
    assert removed[ACME] == {"costCode": "c", "skills": ["go"]}


async def test_a_patch_that_breaks_the_declaration_changes_nothing(acme: httpx.AsyncClient) -> None:
    created = await provision(acme, **{ACME: {"costCode": "a"}})
    response = await acme.patch(
        f"/Users/{created['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "remove", "path": f"{ACME}:costCode"},
                {"op": "add", "path": f"{ACME}:badgeNumber", "value": 3},
            ],
        },
    )
    assert "costCode" in assert_scim_error(response, 400, "invalidValue")["detail"]
    fetched = (await acme.get(f"/Users/{created['id']}")).json()
    assert fetched["displayName"] == "Isaac Brock"
    assert fetched[ACME] == {"costCode": "a"}


async def test_custom_attributes_filter_ignoring_case_and_sort_by_their_type(acme: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    for badge, cost in ((30, "Sales"), (4, "sales"), (200, "R&D")):
        await provision(
            acme, f"{tag}-{badge}@example.com", **{ACME: {"costCode": cost, "badgeNumber": badge}}
        )
    sales = (await acme.get("/Users", params={"filter": f'{ACME}:costCode eq "SALES"'})).json()
    assert sorted(user[ACME]["badgeNumber"] for user in sales["Resources"]) == [4, 30]
    big = (await acme.get("/Users", params={"filter": f"{ACME}:badgeNumber gt 10"})).json()
    assert sorted(user[ACME]["badgeNumber"] for user in big["Resources"]) == [30, 200]
    # Sorted as integers (4 < 30 < 200), not as text ("200" < "30" < "4").
    ordered = (
        await acme.get("/Users", params={"sortBy": f"{ACME}:badgeNumber", "sortOrder": "descending"})
    ).json()
    assert [user[ACME]["badgeNumber"] for user in ordered["Resources"]] == [200, 30, 4]


async def test_searches_by_post_read_the_orgs_declaration_as_gets_do(acme: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    created = await provision(acme, f"{tag}@example.com", **{ACME: {"costCode": f"search-{tag}"}})
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": f'{ACME}:costCode eq "SEARCH-{tag}"',
        "attributes": [f"{ACME}:costCode"],
    }
    for path in ("/Users/.search", "/.search"):
        found = await acme.post(path, json=search)
        assert found.status_code == 200, (path, found.text)
        assert found.json()["Resources"] == [
            {"schemas": [CORE, ACME], "id": created["id"], ACME: {"costCode": f"search-{tag}"}}
        ], path
    # The short name is the declared attribute's, as no core attribute is called so.
    short = await acme.post("/Users/.search", json={**search, "filter": f'costCode eq "search-{tag}"'})
    assert [user["id"] for user in short.json()["Resources"]] == [created["id"]]


async def test_attributes_selects_a_custom_attribute(acme: httpx.AsyncClient) -> None:
    created = await provision(acme, **{ACME: {"costCode": "x", "badgeNumber": 1}})
    selected = await acme.get(f"/Users/{created['id']}", params={"attributes": f"{ACME}:costCode"})
    assert selected.json() == {"schemas": [CORE, ACME], "id": created["id"], ACME: {"costCode": "x"}}
    excluded = await acme.get(f"/Users/{created['id']}", params={"excludedAttributes": f"{ACME}:costCode"})
    assert excluded.json()[ACME] == {"badgeNumber": 1}


async def test_oktas_own_custom_namespace_works_end_to_end(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    await declare(services, tenant, OKTA_CUSTOM, [{"name": "costCode"}])
    created = await provision(scim, **{OKTA_CUSTOM: {"costCode": "okta-1"}})
    assert created[OKTA_CUSTOM] == {"costCode": "okta-1"}
    found = (await scim.get("/Users", params={"filter": f'{OKTA_CUSTOM}:costCode eq "okta-1"'})).json()
    assert [user["id"] for user in found["Resources"]] == [created["id"]]


async def test_schemas_and_resource_types_answer_for_the_tokens_organization(
    acme: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    schemas = (await acme.get("/Schemas")).json()
    assert [schema["id"] for schema in schemas["Resources"]][-1] == ACME
    declared = (await acme.get(f"/Schemas/{ACME}")).json()
    assert declared["attributes"][0]["name"] == "costCode"
    assert declared["attributes"][0]["required"] is True
    user_type = (await acme.get("/ResourceTypes/User")).json()
    assert user_type["schemaExtensions"] == [
        {"schema": ENTERPRISE, "required": False},
        {"schema": ACME, "required": False},
    ]
    # Without a token, the standard schemas alone.
    async with httpx.AsyncClient(transport=http._transport, base_url=http.base_url) as anonymous:
        public = (await anonymous.get("/Schemas")).json()
        assert ACME not in [schema["id"] for schema in public["Resources"]]
        assert_scim_error(await anonymous.get(f"/Schemas/{ACME}"), 404)
        public_type = (await anonymous.get("/ResourceTypes/User")).json()
        assert public_type["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]


async def test_an_auditors_token_sees_the_organizations_own_schemas_too(
    acme: httpx.AsyncClient, http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with pool.acquire() as connection:
        _, auditor = await tenancy.issue_token(connection, tenant.org.org_id, scope="auditor")
    headers = {"Authorization": f"Bearer {auditor}"}
    schemas = await http.get("/Schemas", headers=headers)
    assert schemas.status_code == 200, schemas.text
    assert ACME in [schema["id"] for schema in schemas.json()["Resources"]]
    user_type = (await http.get("/ResourceTypes/User", headers=headers)).json()
    assert {"schema": ACME, "required": False} in user_type["schemaExtensions"]


async def test_an_organizations_schemas_may_not_nest_but_another_organizations_may(
    services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    await declare(services, tenant)
    for nesting in (f"{ACME}:desk", ACME.rpartition(":")[0]):
        with pytest.raises(DomainError, match="nest"):
            await declare(services, tenant, urn=nesting)
    # What another organization declared is no concern of this one's.
    other = await new_tenant(pool)
    assert await declare(services, other, urn=f"{ACME}:desk") == 1


async def test_two_organizations_never_see_each_others_declarations(
    acme: httpx.AsyncClient, http: httpx.AsyncClient, services: Services, pool: asyncpg.Pool
) -> None:
    other = await new_tenant(pool)
    other_urn = "urn:ietf:params:scim:schemas:extension:globex:2.0:User"
    await declare(services, other, other_urn, [{"name": "costCode", "type": "integer"}])
    async with client_of(http, other) as globex:
        listed = [schema["id"] for schema in (await globex.get("/Schemas")).json()["Resources"]]
        assert other_urn in listed
        assert ACME not in listed
        # ACME's attributes mean nothing here: ignored on create, refused in a filter.
        created = await provision(globex, **{ACME: {"costCode": "x"}, other_urn: {"costCode": "12"}})
        assert ACME not in created
        assert created[other_urn] == {"costCode": 12}
        assert_scim_error(
            await globex.get("/Users", params={"filter": f'{ACME}:costCode eq "x"'}), 400, "invalidFilter"
        )
    assert other_urn not in [schema["id"] for schema in (await acme.get("/Schemas")).json()["Resources"]]


async def test_a_new_declaration_keeps_old_events_and_stored_values_but_renders_only_what_it_declares(
    acme: httpx.AsyncClient, services: Services, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    created = await provision(acme, **{ACME: {"costCode": "kept", "badgeNumber": 7}})
    assert (
        await declare(
            services, tenant, ACME, [{"name": "region"}, {"name": "badgeNumber", "type": "integer"}]
        )
        == 2
    )
    fetched = (await acme.get(f"/Users/{created['id']}")).json()
    assert fetched[ACME] == {"badgeNumber": 7}
    assert_scim_error(
        await acme.get("/Users", params={"filter": f'{ACME}:costCode eq "kept"'}), 400, "invalidFilter"
    )
    provisioned = await pool.fetchval(
        "SELECT payload FROM events WHERE org_id = $1 AND stream_id = $2 AND version = 1",
        tenant.org.org_id,
        uuid.UUID(created["id"]),
    )
    assert provisioned["attributes"][ACME] == {"costCode": "kept", "badgeNumber": 7}
    stored = await pool.fetchval(
        "SELECT resource FROM scim_users WHERE org_id = $1 AND user_id = $2",
        tenant.org.org_id,
        uuid.UUID(created["id"]),
    )
    assert stored[ACME]["costCode"] == "kept"
    declarations = await pool.fetch(
        "SELECT type, payload FROM events WHERE org_id = $1 AND type LIKE 'OrgSchema%' ORDER BY version",
        tenant.org.org_id,
    )
    assert [row["type"] for row in declarations] == ["OrgSchemaDeclared", "OrgSchemaRedeclared"]
    assert [a["name"] for a in declarations[0]["payload"]["declaration"]["attributes"]] == [
        "costCode",
        "badgeNumber",
        "skills",
    ]
    # A new write is validated by the current declaration: `region` is now known.
    patched = await acme.patch(
        f"/Users/{created['id']}",
        json={"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": f"{ACME}:region", "value": "EU"}]},
    )
    assert patched.json()[ACME] == {"region": "EU", "badgeNumber": 7}
    # The write left what the declaration no longer describes out of the profile, and recorded so.
    stored = await pool.fetchval(
        "SELECT resource FROM scim_users WHERE org_id = $1 AND user_id = $2",
        tenant.org.org_id,
        uuid.UUID(created["id"]),
    )
    assert stored[ACME] == {"region": "EU", "badgeNumber": 7}
    changed = await pool.fetchval(
        "SELECT payload FROM events WHERE org_id = $1 AND stream_id = $2 ORDER BY version DESC LIMIT 1",
        tenant.org.org_id,
        uuid.UUID(created["id"]),
    )
    assert changed["changed"] == {ACME: {"region": "EU", "badgeNumber": 7}}
