"""SCIM /Users over HTTP, through the ASGI app and its lifespan."""

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager

from app.http.app import create_app
from app.infrastructure.settings import Settings
from app.services import tenancy
from scim.filter import MAX_FILTER_LENGTH
from tests.conftest import Tenant, new_tenant, okta_user

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


async def create(scim: httpx.AsyncClient, user_name: str | None = None, **extra: Any) -> dict[str, Any]:
    response = await scim.post(
        "/Users", json=okta_user(user_name or f"{uuid.uuid4().hex[:8]}@example.com", **extra)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return body


async def test_post_returns_201_with_the_whole_resource_location_etag_and_meta(
    scim: httpx.AsyncClient,
) -> None:
    response = await scim.post("/Users", json=okta_user("isaac@example.com"))
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/scim+json"
    body = response.json()
    user_id = body["id"]
    uuid.UUID(user_id)
    assert response.headers["location"] == f"http://scim.test/scim/v2/Users/{user_id}"
    assert response.headers["etag"] == 'W/"1"'
    assert body["schemas"] == [CORE]
    assert body["userName"] == "isaac@example.com"
    assert body["name"] == {"familyName": "Brock", "givenName": "Isaac"}
    assert body["emails"] == [{"value": "isaac@example.com", "type": "work", "primary": True}]
    assert (body["displayName"], body["locale"], body["externalId"], body["active"]) == (
        "Isaac Brock",
        "en-US",
        "00ujl29u0le5T6Aj10h7",
        True,
    )
    assert "password" not in body
    assert "groups" not in body
    meta = body["meta"]
    assert meta["resourceType"] == "User"
    assert meta["location"] == response.headers["location"]
    assert meta["version"] == 'W/"1"'
    assert meta["created"] == meta["lastModified"]
    assert (await scim.get(f"/Users/{user_id}")).json() == body


async def test_the_password_is_never_stored(scim: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    user = await create(scim)
    stored = await pool.fetchval("SELECT count(*) FROM events WHERE payload::text LIKE '%1mz050nq%'")
    assert stored == 0
    assert "1mz050nq" not in str(
        await pool.fetchval("SELECT resource FROM scim_users WHERE user_id = $1", uuid.UUID(user["id"]))
    )


async def test_read_only_attributes_sent_on_create_are_ignored(scim: httpx.AsyncClient) -> None:
    body = await create(scim, id="client-chosen", meta={"version": 'W/"99"'}, groups=[{"value": "x"}])
    assert body["id"] != "client-chosen"
    assert body["meta"]["version"] == 'W/"1"'
    assert "groups" not in body


async def test_enterprise_extension_round_trips_and_is_listed_in_schemas(scim: httpx.AsyncClient) -> None:
    body = await create(scim, **{ENTERPRISE: {"department": "R&D", "manager": {"value": "boss-id"}}})
    assert body["schemas"] == [CORE, ENTERPRISE]
    assert body[ENTERPRISE] == {"department": "R&D", "manager": {"value": "boss-id"}}


async def test_twenty_concurrent_posts_of_one_user_name_give_one_201_and_nineteen_409(
    scim: httpx.AsyncClient,
) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}@example.com"
    variants = [name.upper() if index % 2 else name for index in range(20)]
    responses = await asyncio.gather(*(scim.post("/Users", json=okta_user(variant)) for variant in variants))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19
    for response in responses:
        if response.status_code == 409:
            assert_scim_error(response, 409, "uniqueness")
    listed = (await scim.get("/Users", params={"filter": f'userName eq "{name}"'})).json()
    assert listed["totalResults"] == 1


async def test_user_names_are_unique_ignoring_case(scim: httpx.AsyncClient) -> None:
    await create(scim, "Case.Person@Example.com")
    response = await scim.post("/Users", json=okta_user("case.person@example.COM"))
    body = assert_scim_error(response, 409, "uniqueness")
    assert "case.person@example.COM" in body["detail"]


async def test_get_unknown_or_malformed_id_is_404(scim: httpx.AsyncClient) -> None:
    assert_scim_error(await scim.get(f"/Users/{uuid.uuid4()}"), 404)
    assert_scim_error(await scim.get("/Users/not-a-uuid"), 404)
    assert_scim_error(await scim.put("/Users/not-a-uuid", json=okta_user("x@y.z")), 404)
    assert_scim_error(await scim.delete(f"/Users/{uuid.uuid4()}"), 404)


async def test_oktas_connection_test_gets_integers(scim: httpx.AsyncClient) -> None:
    response = await scim.get("/Users", params={"startIndex": 1, "count": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"], body["Resources"]) == (
        0,
        1,
        0,
        [],
    )


async def test_paging_is_stable_one_based_and_count_is_capped(scim: httpx.AsyncClient) -> None:
    created = [await create(scim, f"page{index:02d}@example.com") for index in range(7)]
    seen = []
    for start in (1, 4, 7):
        body = (await scim.get("/Users", params={"startIndex": start, "count": 3})).json()
        assert body["totalResults"] == 7
        assert body["startIndex"] == start
        assert body["itemsPerPage"] == len(body["Resources"])
        seen += [resource["id"] for resource in body["Resources"]]
    assert seen == [user["id"] for user in created]
    past_the_end = (await scim.get("/Users", params={"startIndex": 50, "count": 3})).json()
    assert (past_the_end["totalResults"], past_the_end["itemsPerPage"]) == (7, 0)
    only_total = (await scim.get("/Users", params={"count": 0})).json()
    assert (only_total["totalResults"], only_total["Resources"]) == (7, [])
    clamped = (await scim.get("/Users", params={"startIndex": -5, "count": 100000})).json()
    assert (clamped["startIndex"], clamped["itemsPerPage"]) == (1, 7)
    assert_scim_error(await scim.get("/Users", params={"count": "ten"}), 400, "invalidValue")


async def test_filtering_with_the_rfc_grammar(scim: httpx.AsyncClient) -> None:
    ann = await create(
        scim, "ann@acme.com", title="Engineer", emails=[{"value": "ann@acme.com", "type": "work"}]
    )
    bob = await create(scim, "bob@other.org", emails=[{"value": "bob@acme.com", "type": "home"}])

    async def ids(text: str) -> set[str]:
        response = await scim.get("/Users", params={"filter": text})
        assert response.status_code == 200, response.text
        return {resource["id"] for resource in response.json()["Resources"]}

    assert await ids('userName eq "ANN@acme.com"') == {ann["id"]}
    assert await ids('emails[type eq "work" and value co "@ACME.com"]') == {ann["id"]}
    assert await ids('emails co "acme.com"') == {ann["id"], bob["id"]}
    assert await ids('USERNAME SW "b" OR title Pr') == {ann["id"], bob["id"]}
    assert await ids('not (title pr) and (userName ew ".org")') == {bob["id"]}
    assert await ids(f'id eq "{bob["id"]}"') == {bob["id"]}
    assert await ids('userName eq "nobody@x.org"') == set()


async def test_a_lookup_by_a_unique_attribute_pages_like_any_listing(scim: httpx.AsyncClient) -> None:
    """`userName eq` and `id eq` take a query of their own (at most one row can match): paging still holds."""
    ann = await create(scim, "lookup@acme.com", groups=[], active=True)

    async def listing(**params: object) -> tuple[int, int, int, list[str]]:
        body = (await scim.get("/Users", params=params)).json()
        ids = [resource["id"] for resource in body["Resources"]]
        return body["totalResults"], body["startIndex"], body["itemsPerPage"], ids

    assert await listing(filter='userName eq "LOOKUP@acme.com"') == (1, 1, 1, [ann["id"]])
    assert await listing(filter=f'id eq "{ann["id"]}"', attributes="userName") == (1, 1, 1, [ann["id"]])
    assert await listing(filter='userName eq "lookup@acme.com"', startIndex=2) == (1, 2, 0, [])
    assert await listing(filter='userName eq "lookup@acme.com"', count=0) == (1, 1, 0, [])
    assert await listing(filter='userName eq "nobody@acme.com"') == (0, 1, 0, [])
    # Not an equality on a unique attribute: the general query, with the same answers.
    assert await listing(filter='userName ne "x" and userName eq "lookup@acme.com"') == (1, 1, 1, [ann["id"]])


@pytest.mark.parametrize(
    "text",
    ["userName eq", 'userName eq "a" and', 'userName foo "a"', 'bogus eq "x"', "active gt 3", "(title pr"],
)
async def test_a_malformed_or_unsupported_filter_is_400_invalid_filter(
    scim: httpx.AsyncClient, text: str
) -> None:
    assert_scim_error(await scim.get("/Users", params={"filter": text}), 400, "invalidFilter")


async def test_attributes_excluded_attributes_and_sorting(scim: httpx.AsyncClient) -> None:
    await create(scim, "c@x.org", displayName="Carol")
    await create(scim, "a@x.org", displayName="alice")
    await create(scim, "b@x.org", displayName="Bob")
    listed = (
        await scim.get("/Users", params={"attributes": "userName,name.givenName", "sortBy": "displayName"})
    ).json()
    assert [resource["userName"] for resource in listed["Resources"]] == ["a@x.org", "b@x.org", "c@x.org"]
    assert set(listed["Resources"][0]) == {"schemas", "id", "userName", "name"}
    assert listed["Resources"][0]["name"] == {"givenName": "Isaac"}
    descending = (await scim.get("/Users", params={"sortBy": "userName", "sortOrder": "descending"})).json()
    assert [resource["userName"] for resource in descending["Resources"]] == ["c@x.org", "b@x.org", "a@x.org"]
    one = descending["Resources"][0]["id"]
    trimmed = (await scim.get(f"/Users/{one}", params={"excludedAttributes": "emails,meta,name"})).json()
    assert "emails" not in trimmed
    assert "meta" not in trimmed
    assert "name" not in trimmed
    assert trimmed["id"] == one
    assert_scim_error(await scim.get("/Users", params={"sortOrder": "sideways"}), 400, "invalidValue")


async def test_put_replaces_the_profile_like_oktas_profile_push(scim: httpx.AsyncClient) -> None:
    user = await create(scim, "push@example.com", title="Engineer", nickName="Zac")
    fetched = (await scim.get(f"/Users/{user['id']}")).json()
    fetched["name"]["givenName"] = "Isaiah"
    fetched["title"] = "Staff Engineer"
    del fetched["nickName"]
    response = await scim.put(f"/Users/{user['id']}", json=fetched)
    assert response.status_code == 200
    body = response.json()
    assert body["name"]["givenName"] == "Isaiah"
    assert body["title"] == "Staff Engineer"
    assert "nickName" not in body
    assert body["meta"]["version"] == 'W/"2"'
    assert body["meta"]["lastModified"] > body["meta"]["created"]
    assert (await scim.get(f"/Users/{user['id']}")).json() == body


async def test_put_that_changes_nothing_records_nothing(scim: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    user = await create(scim)
    response = await scim.put(f"/Users/{user['id']}", json=okta_user(user["userName"]))
    assert response.json()["meta"]["version"] == 'W/"1"'
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", uuid.UUID(user["id"])) == 1


async def test_oktas_pathless_deactivate_keeps_the_user_readable_then_reactivates(
    scim: httpx.AsyncClient,
) -> None:
    user = await create(scim)
    for active in (False, True):
        response = await scim.patch(
            f"/Users/{user['id']}",
            json={"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]},
        )
        assert response.status_code == 200
        assert response.json()["active"] is active
        fetched = (await scim.get(f"/Users/{user['id']}")).json()
        assert fetched["active"] is active
    listed = (await scim.get("/Users", params={"filter": f'userName eq "{user["userName"]}"'})).json()
    assert listed["Resources"][0]["active"] is True


async def test_entra_style_patch_with_capitalised_ops_string_booleans_and_paths(
    scim: httpx.AsyncClient,
) -> None:
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": 'emails[type eq "work"].value', "value": "new@example.com"},
                {"op": "Replace", "path": "name.givenName", "value": "Zed"},
                {"op": "Add", "value": {f"{ENTERPRISE}:department": "Ops"}},
                {"op": "Remove", "path": "locale"},
            ],
        },
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["active"] is False
    assert body["emails"] == [{"value": "new@example.com", "type": "work", "primary": True}]
    assert body["name"]["givenName"] == "Zed"
    assert body[ENTERPRISE] == {"department": "Ops"}
    assert "locale" not in body


async def test_a_patch_with_one_bad_operation_applies_none_of_them(scim: httpx.AsyncClient) -> None:
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "replace", "path": "title", "value": "Changed"},
                {"op": "replace", "path": "nonexistent", "value": "x"},
            ],
        },
    )
    assert_scim_error(response, 400, "invalidPath")
    assert (await scim.get(f"/Users/{user['id']}")).json() == user


async def test_delete_records_an_event_and_the_user_is_gone(
    scim: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await create(scim)
    response = await scim.delete(f"/Users/{user['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_scim_error(await scim.get(f"/Users/{user['id']}"), 404)
    assert_scim_error(await scim.delete(f"/Users/{user['id']}"), 404)
    types = await pool.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", uuid.UUID(user["id"])
    )
    assert [row["type"] for row in types] == ["UserProvisioned", "UserDeleted"]
    again = await scim.post("/Users", json=okta_user(user["userName"]))
    assert again.status_code == 201, "a deleted user's userName is free again"


async def test_if_match_with_a_stale_version_is_412_and_changes_nothing(scim: httpx.AsyncClient) -> None:
    user = await create(scim)
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    ok = await scim.patch(f"/Users/{user['id']}", json=deactivate, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'
    stale = await scim.put(
        f"/Users/{user['id']}", json=okta_user(user["userName"]), headers={"If-Match": 'W/"1"'}
    )
    assert_scim_error(stale, 412)
    assert (await scim.get(f"/Users/{user['id']}")).json()["active"] is False
    assert_scim_error(await scim.delete(f"/Users/{user['id']}", headers={"If-Match": '"1"'}), 412)
    not_modified = await scim.get(f"/Users/{user['id']}", headers={"If-None-Match": 'W/"2"'})
    assert not_modified.status_code == 304


async def test_concurrent_patches_to_one_user_all_land(scim: httpx.AsyncClient) -> None:
    user = await create(scim)
    titles = [f"t{index}" for index in range(8)]
    responses = await asyncio.gather(
        *(
            scim.patch(
                f"/Users/{user['id']}",
                json={
                    "schemas": [PATCH_OP],
                    "Operations": [
                        {"op": "add", "path": "emails", "value": [{"value": f"{title}@example.com"}]}
                    ],
                },
            )
            for title in titles
        )
    )
    assert [response.status_code for response in responses] == [200] * 8
    emails = {email["value"] for email in (await scim.get(f"/Users/{user['id']}")).json()["emails"]}
    assert {f"{title}@example.com" for title in titles} <= emails


@pytest.mark.parametrize("content_type", ["application/scim+json", "application/json", None])
async def test_bodies_are_accepted_as_scim_json_json_or_without_content_type(
    scim: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    content = json.dumps(okta_user(f"{uuid.uuid4().hex[:8]}@ct.org")).encode()
    request = scim.build_request("POST", "/Users", content=content, headers=headers)
    assert request.headers.get("content-type") == content_type
    response = await scim.send(request)
    assert response.status_code == 201


async def test_malformed_json_is_400_invalid_syntax(scim: httpx.AsyncClient) -> None:
    assert_scim_error(await scim.post("/Users", content=b'{"userName": "x",'), 400, "invalidSyntax")
    assert_scim_error(await scim.post("/Users", content=b""), 400, "invalidSyntax")
    patch = await scim.patch(f"/Users/{uuid.uuid4()}", json={"Operations": "nope"})
    assert_scim_error(patch, 400, "invalidSyntax")


@pytest.mark.parametrize(
    ("body", "attribute"),
    [
        ({"name": {"givenName": "x"}}, "userName"),
        ({"userName": 12}, "userName"),
        ({"userName": "a@b.c", "active": "perhaps"}, "active"),
        ({"userName": "a@b.c", "emails": "a@b.c"}, "emails"),
        (["not", "an", "object"], "object"),
    ],
)
async def test_wrong_types_and_missing_attributes_are_400_invalid_value_naming_the_attribute(
    scim: httpx.AsyncClient, body: Any, attribute: str
) -> None:
    error = assert_scim_error(await scim.post("/Users", json=body), 400, "invalidValue")
    assert attribute in error["detail"]


async def test_a_body_over_the_limit_is_413(scim: httpx.AsyncClient) -> None:
    huge = okta_user("big@example.com", title="x" * (70 * 1024))
    assert_scim_error(await scim.post("/Users", json=huge), 413)


async def test_unknown_routes_and_unsupported_methods_are_scim_errors(scim: httpx.AsyncClient) -> None:
    assert_scim_error(await scim.get("/Nope"), 404)
    assert_scim_error(await scim.delete("/Users"), 405)
    assert_scim_error(await scim.post(f"/Users/{uuid.uuid4()}", json={}), 405)


async def test_missing_malformed_unknown_and_revoked_tokens_are_401(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer scl_unknown"},
    ):
        response = await http.get("/Users", headers=headers)
        assert_scim_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await http.get("/Users", headers=tenant.headers)).status_code == 200
    async with pool.acquire() as connection:
        await tenancy.revoke_token(connection, tenant.token_id)
    assert_scim_error(await http.get("/Users", headers=tenant.headers), 401)


async def test_an_organizations_token_never_reads_or_changes_another_organizations_users(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    org_a, org_b = await new_tenant(pool), await new_tenant(pool)
    created = await http.post("/Users", json=okta_user("shared@example.com"), headers=org_a.headers)
    a_user = created.json()
    same_name = await http.post("/Users", json=okta_user("shared@example.com"), headers=org_b.headers)
    assert same_name.status_code == 201, "the same userName may exist in two organizations"
    path = f"/Users/{a_user['id']}"
    assert_scim_error(await http.get(path, headers=org_b.headers), 404)
    assert_scim_error(await http.put(path, json=okta_user("x@y.z"), headers=org_b.headers), 404)
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert_scim_error(await http.patch(path, json=patch, headers=org_b.headers), 404)
    assert_scim_error(await http.delete(path, headers=org_b.headers), 404)
    listed = (await http.get("/Users", headers=org_b.headers)).json()
    assert [resource["id"] for resource in listed["Resources"]] == [same_name.json()["id"]]
    assert (await http.get(path, headers=org_a.headers)).json()["active"] is True


async def test_every_response_carries_a_request_id_which_is_recorded_on_the_events(
    scim: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    response = await scim.post(
        "/Users", json=okta_user("rid@example.com"), headers={"X-Request-Id": "okta-req-42"}
    )
    assert response.headers["x-request-id"] == "okta-req-42"
    recorded = await pool.fetchrow(
        "SELECT actor, request_id FROM events WHERE stream_id = $1", uuid.UUID(response.json()["id"])
    )
    assert recorded["request_id"] == "okta-req-42"
    assert recorded["actor"].startswith("token:")
    generated = await scim.get("/Users")
    assert len(generated.headers["x-request-id"]) == 32


async def test_discovery_is_truthful_and_read_only(http: httpx.AsyncClient) -> None:
    config = (await http.get("/ServiceProviderConfig")).json()
    assert config["patch"]["supported"] is True
    assert config["bulk"]["supported"] is False
    assert config["filter"] == {"supported": True, "maxResults": 1000}
    assert config["sort"]["supported"]
    assert config["etag"]["supported"]
    assert config["changePassword"]["supported"] is False
    types = (await http.get("/ResourceTypes")).json()
    assert [resource["name"] for resource in types["Resources"]] == ["User", "Group"]
    assert (await http.get("/ResourceTypes/User")).json()["schemaExtensions"] == [
        {"schema": ENTERPRISE, "required": False}
    ]
    schemas = (await http.get("/Schemas")).json()
    assert {schema["id"] for schema in schemas["Resources"]} == {
        CORE,
        ENTERPRISE,
        "urn:ietf:params:scim:schemas:core:2.0:Group",
    }
    user_schema = (await http.get(f"/Schemas/{CORE}")).json()
    user_name = next(attribute for attribute in user_schema["attributes"] if attribute["name"] == "userName")
    assert (user_name["caseExact"], user_name["uniqueness"], user_name["required"]) == (False, "server", True)
    assert_scim_error(await http.get("/Schemas/urn:nope"), 404)
    for path in ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas", f"/Schemas/{CORE}"):
        assert_scim_error(await http.post(path, json={}), 405)
        assert_scim_error(await http.delete(path), 405)


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("http://scim.test/healthz")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/Users", b'{"userName": "nul\\u0000byte"}', 400),
        ("POST", "/Users", b'{"userName": "ok", "name": {"givenName": "\\u0000"}}', 400),
        ("POST", "/Users", b'{"userName": "lone\\ud800surrogate"}', 400),
        ("POST", "/Users", b"[" * 30_000 + b"]" * 30_000, 400),
        ("POST", "/Users", b'{"userName": "x", "emails": [{"value": 1e999}]}', 400),
        ("GET", "/Users?startIndex=99999999999999999999999", None, 200),
        ("GET", "/Users?count=99999999999999999999999", None, 200),
        ("GET", '/Users?filter=userName eq "\\u0000"', None, 400),
        ("GET", '/Users?filter=userName eq "\\ud800"', None, 400),
        ("GET", '/Users?filter=meta.created gt "9999999-01-01"', None, 400),
        ("GET", "/Users?filter=userName gt 1e999", None, 400),
        ("GET", "/Users?sortBy=meta.location", None, 400),
        ("GET", "/Users?attributes=a.b.c", None, 400),
        ("GET", "/Users?excludedAttributes=urn:x:y", None, 200),
    ],
)
async def test_hostile_input_gets_a_clear_answer_never_a_500(
    scim: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int
) -> None:
    response = await scim.request(method, path, content=body)
    assert response.status_code == status, response.text
    if status >= 400:
        assert_scim_error(response, status, response.json().get("scimType"))


async def test_the_longest_filter_accepted_still_compiles_and_runs(
    settings: Settings, tenant: Tenant
) -> None:
    # With the bound on comparisons raised as far as the length allows, as an operator may.
    unbounded = msgspec.structs.replace(settings, max_filter_terms=MAX_FILTER_LENGTH)
    terms = (MAX_FILTER_LENGTH - 8) // len("title pr or ")
    text = "title pr or " * terms + "title pr"
    assert len(text) <= MAX_FILTER_LENGTH
    nested = "not (" * 300 + "title pr" + ")" * 300
    async with LifespanManager(create_app(unbounded)) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://scim.test/scim/v2", headers=tenant.headers
        ) as scim:
            for filter_text in (text, nested):
                response = await scim.get("/Users", params={"filter": filter_text})
                assert response.status_code == 200, response.text[:300]
