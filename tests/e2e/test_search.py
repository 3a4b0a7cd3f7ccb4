"""POST .search (RFC 7644 §3.4.3) on /Users, /Groups and the root: the same filter, paging, sorting and
attribute selection as a GET, and the root's paging across Users then Groups."""

import uuid
from typing import Any

import asyncpg
import httpx

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import Metadata
from tests.conftest import Tenant, okta_user

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


async def search(scim: httpx.AsyncClient, path: str, **body: Any) -> dict[str, Any]:
    response = await scim.post(path, json={"schemas": [SEARCH], **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def users(scim: httpx.AsyncClient, *titles: str) -> list[str]:
    names = []
    for title in titles:
        name = f"{title.lower()}.{uuid.uuid4().hex[:6]}@example.com"
        assert (await scim.post("/Users", json=okta_user(name, title=title))).status_code == 201
        names.append(name)
    return names


async def groups(services: Services, tenant: Tenant, roles: int) -> None:
    """One project and `roles` roles: as many groups."""
    await services.catalog.create(PROJECT, tenant.org.org_id, "Apollo", Metadata("admin:test"))
    for index in range(roles):
        await services.catalog.create(ROLE, tenant.org.org_id, f"Role{index}", Metadata("admin:test"))


async def test_a_user_search_answers_as_the_same_get_does(scim: httpx.AsyncClient) -> None:
    await users(scim, "Cook", "Baker", "Able", "Dancer")
    query = {
        "filter": 'title ne "Dancer"',
        "sortBy": "title",
        "sortOrder": "descending",
        "startIndex": 2,
        "count": 2,
    }
    got = await scim.get("/Users", params={**query, "attributes": "title,userName", "excludedAttributes": ""})
    searched = await search(scim, "/Users/.search", **query, attributes=["title", "userName"])
    assert searched == got.json()
    assert searched["totalResults"] == 3
    assert [user["title"] for user in searched["Resources"]] == ["Baker", "Able"]
    assert set(searched["Resources"][0]) == {"schemas", "id", "title", "userName"}
    excluded = await search(scim, "/Users/.search", excludedAttributes=["emails", "name"], count=1)
    assert not {"emails", "name"} & set(excluded["Resources"][0])


async def test_a_group_search_answers_as_the_same_get_does(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    await groups(services, tenant, 3)
    query = {"filter": 'displayName co "Role1"'}
    searched = await search(scim, "/Groups/.search", **query)
    assert searched == (await scim.get("/Groups", params=query)).json()
    assert searched["totalResults"] == 1


async def test_the_root_search_pages_across_users_then_groups(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    names = await users(scim, "A", "B", "C")
    await groups(services, tenant, 2)
    everything = await search(scim, "/.search")
    assert everything["totalResults"] == 5
    kinds = [resource["meta"]["resourceType"] for resource in everything["Resources"]]
    assert kinds == ["User", "User", "User", "Group", "Group"]
    assert [resource.get("userName") for resource in everything["Resources"][:3]] == names
    # A page that straddles the two types, and one inside the groups.
    straddling = await search(scim, "/.search", startIndex=3, count=2)
    assert (straddling["totalResults"], straddling["startIndex"], straddling["itemsPerPage"]) == (5, 3, 2)
    assert straddling["Resources"] == everything["Resources"][2:4]
    assert (await search(scim, "/.search", startIndex=5, count=10))["Resources"] == everything["Resources"][
        4:
    ]
    assert (await search(scim, "/.search", count=0))["Resources"] == []


async def test_the_root_search_applies_a_filter_to_the_types_that_have_its_attributes(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    [name] = await users(scim, "Solo")
    await groups(services, tenant, 1)
    only_users = await search(scim, "/.search", filter=f'userName eq "{name}"')
    assert [resource["userName"] for resource in only_users["Resources"]] == [name]
    only_groups = await search(scim, "/.search", filter="members pr or not (userName pr)")
    assert {resource["meta"]["resourceType"] for resource in only_groups["Resources"]} == {"Group"}
    # Each type answers the part of the filter that names its attributes: the user and the group.
    mixed = await search(scim, "/.search", filter='userName pr or displayName eq "Statsig-Apollo-Role0"')
    assert [resource["meta"]["resourceType"] for resource in mixed["Resources"]] == ["User", "Group"]
    not_a_user = await search(scim, "/.search", filter=f'not (userName eq "{name}")')
    assert [resource["meta"]["resourceType"] for resource in not_a_user["Resources"]] == ["Group"]
    both = await search(
        scim, "/.search", filter='meta.resourceType eq "Group" or meta.resourceType eq "User"'
    )
    assert both["totalResults"] == 2
    sorted_by_user_name = await search(scim, "/.search", sortBy="userName")
    assert sorted_by_user_name["totalResults"] == 2
    neither = await scim.post("/.search", json={"schemas": [SEARCH], "filter": 'shoeSize eq "9"'})
    assert neither.status_code == 400
    assert neither.json()["scimType"] == "invalidFilter"
    assert "shoeSize" in neither.json()["detail"]
    unknown_sort = await scim.post("/.search", json={"schemas": [SEARCH], "sortBy": "shoeSize"})
    assert unknown_sort.status_code == 400
    assert "shoeSize" in unknown_sort.json()["detail"]


async def test_a_search_bodys_member_names_are_matched_ignoring_case(scim: httpx.AsyncClient) -> None:
    [name, _] = await users(scim, "Upper", "Other")
    response = await scim.post(
        "/Users/.search", json={"SCHEMAS": [SEARCH], "FILTER": f'userName eq "{name}"', "Count": 5}
    )
    assert response.status_code == 200, response.text
    assert [user["userName"] for user in response.json()["Resources"]] == [name]


async def test_a_bad_search_body_is_a_scim_error(scim: httpx.AsyncClient) -> None:
    for path in ("/Users/.search", "/Groups/.search", "/.search"):
        for body, scim_type in (
            ({"filter": 'userName eq "x"'}, "invalidSyntax"),
            ({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]}, "invalidSyntax"),
            ({"schemas": [SEARCH], "count": "many"}, "invalidSyntax"),
            ({"schemas": [SEARCH], "sortOrder": "sideways"}, "invalidValue"),
            ({"schemas": [SEARCH], "filter": "userName eq"}, "invalidFilter"),
            ([SEARCH], "invalidSyntax"),
        ):
            response = await scim.post(path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            assert response.json()["schemas"] == [ERROR]
            assert response.json()["scimType"] == scim_type, (path, body, response.text)


async def test_search_is_declared_in_the_openapi_description(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    paths = (await http.get("http://scim.test/openapi.json")).json()["paths"]
    assert {"/scim/v2/Users/.search", "/scim/v2/Groups/.search", "/scim/v2/.search"} <= set(paths)
