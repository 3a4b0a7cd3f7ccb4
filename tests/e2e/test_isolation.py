"""No route ever shows or changes one organization's data to another organization's token.

Every route of the app has a probe here, or is named as holding no organization's data; a route added
without either fails `test_every_route_is_probed`. Each probe runs twice: with the owning organization's
credentials, where its markers must appear (so the probe can see a leak), and with the other organization's,
where they must not.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

import asyncpg
import httpx
import pytest

from app.services import tenancy
from app.services.catalog import PROJECT, ROLE, CatalogService
from app.services.container import Services
from eventstore.records import Metadata
from eventstore.runner import Runner
from tests.conftest import Tenant, bearer_routes, new_tenant, okta_user

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BASE = "http://scim.test"
# Routes that hold no organization's data: the same answer for every caller.
NOT_ORG_DATA = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/scim/v2/ServiceProviderConfig"),
    ("GET", "/scim/v2/ResourceTypes"),
    ("GET", "/scim/v2/ResourceTypes/{key}"),
    ("GET", "/scim/v2/Schemas"),
    ("GET", "/scim/v2/Schemas/{key}"),
}


@dataclass
class Org:
    tenant: Tenant
    auditor: dict[str, str]
    user_id: str
    user_name: str
    group_id: str
    group_name: str
    admin: dict[str, str]
    # The project and role (ids), and a group of theirs Okta has not linked, for the management API's probes.
    project_id: uuid.UUID
    role_id: uuid.UUID
    unlinked_group_id: uuid.UUID
    catalog_names: tuple[str, str]

    @property
    def scim(self) -> dict[str, str]:
        return self.tenant.headers

    @property
    def markers(self) -> list[str]:
        org = self.tenant.org
        ids = [str(org.org_id), org.name, str(self.tenant.token_id), str(self.project_id), str(self.role_id)]
        return [self.user_id, self.user_name, self.group_id, self.group_name, *ids, *self.catalog_names]


async def populated_org(http: httpx.AsyncClient, services: Services, pool: asyncpg.Pool) -> Org:
    tenant = await new_tenant(pool)
    org_id = tenant.org.org_id
    async with pool.acquire() as connection:
        _, auditor = await tenancy.issue_token(connection, org_id, scope="auditor")
        _, admin = await tenancy.issue_token(connection, org_id, scope="admin")
    project, role = f"Iso{uuid.uuid4().hex[:8]}", f"Lead{uuid.uuid4().hex[:8]}"
    project_id, _ = await services.catalog.create(PROJECT, org_id, project, Metadata("admin:test"))
    role_id, _ = await services.catalog.create(ROLE, org_id, role, Metadata("admin:test"))
    user_name = f"iso.{uuid.uuid4().hex[:8]}@acme.example"
    user_id = (await http.post("/Users", json=okta_user(user_name), headers=tenant.headers)).json()["id"]
    # Okta's failed second attempt, which the connection status names the user in.
    assert (await http.post("/Users", json=okta_user(user_name), headers=tenant.headers)).status_code == 409
    [group] = (await http.get("/Groups", headers=tenant.headers)).json()["Resources"]
    add = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
    }
    assert (await http.patch(f"/Groups/{group['id']}", json=add, headers=tenant.headers)).status_code == 204
    await services.catalog.create(ROLE, org_id, f"Spare{uuid.uuid4().hex[:8]}", Metadata("admin:test"))
    async with pool.acquire() as connection:
        [unlinked] = [
            listed for listed in await CatalogService.groups(connection, org_id) if not listed.linked
        ]
    return Org(
        tenant,
        {"Authorization": f"Bearer {auditor}"},
        user_id,
        user_name,
        group["id"],
        group["displayName"],
        {"Authorization": f"Bearer {admin}"},
        project_id,
        role_id,
        unlinked.group_id,
        (project, role),
    )


Probe = Callable[[httpx.AsyncClient, Org, Org], Awaitable[httpx.Response]]


def reading(method: str, path: str, auditor: bool = False, **params: str) -> Probe:
    """A read of `owner`'s data with `caller`'s token; `{user}`, `{group}` and `{now}` are filled in."""

    async def probe(http: httpx.AsyncClient, owner: Org, caller: Org) -> httpx.Response:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        fill = {"user": owner.user_id, "group": owner.group_id, "user_name": owner.user_name, "now": now}
        return await http.request(
            method,
            BASE + path.format(**fill),
            params={key: value.format(**fill) for key, value in params.items()},
            headers=caller.auditor if auditor else caller.scim,
        )

    return probe


def managing(method: str, path: str, **params: str) -> Probe:
    """A management API request about `owner`'s organization with `caller`'s admin token; `{org}` is the
    owner's organization id."""

    async def probe(http: httpx.AsyncClient, owner: Org, caller: Org) -> httpx.Response:
        return await http.request(method, api_url(path, owner), params=params, headers=caller.admin)

    return probe


def checking_access(by_names: bool = False, callers_path: bool = False) -> Probe:
    """The access check of `owner`'s member in `owner`'s group, by ids or by names, with `caller`'s admin token; on `owner`'s path, or on `caller`'s own."""

    async def probe(http: httpx.AsyncClient, owner: Org, caller: Org) -> httpx.Response:
        org = (caller if callers_path else owner).tenant.org.org_id
        if by_names:
            project, role = owner.catalog_names
            asked = {"user": owner.user_name, "project": project, "role": role}
        else:
            asked = {"user": owner.user_id, "project": str(owner.project_id), "role": str(owner.role_id)}
        return await http.get(f"{BASE}/api/v1/orgs/{org}/access", params=asked, headers=caller.admin)

    return probe


def api_url(path: str, owner: Org) -> str:
    """`path` with the owner's organization, catalog entries, groups and user filled in."""
    return BASE + path.format(
        org=owner.tenant.org.org_id,
        token_id=owner.tenant.token_id,
        project=owner.project_id,
        role=owner.role_id,
        group=owner.group_id,
        unlinked=owner.unlinked_group_id,
        user=owner.user_id,
        # Webhooks are not events: tests/e2e/test_webhook_routes.py probes them with an endpoint of the owner's.
        webhook=uuid.UUID(int=0),
    )


def managing_write(method: str, path: str, body: Callable[[Org], object] | None = None) -> Probe:
    """A change through the management API to `owner`'s organization with `caller`'s admin token."""

    async def probe(http: httpx.AsyncClient, owner: Org, caller: Org) -> httpx.Response:
        sent = body(owner) if body else None
        return await http.request(method, api_url(path, owner), json=sent, headers=caller.admin)

    return probe


def _named(prefix: str) -> Callable[[Org], object]:
    return lambda owner: {"name": f"{prefix}{uuid.uuid4().hex[:8]}"}


def searching(path: str, filter_text: str = "") -> Probe:
    """A POST .search of `owner`'s data with `caller`'s token; `{user_name}` in the filter is filled in."""

    async def probe(http: httpx.AsyncClient, owner: Org, caller: Org) -> httpx.Response:
        body: dict[str, object] = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
        if filter_text:
            body["filter"] = filter_text.format(user_name=owner.user_name)
        return await http.post(BASE + path, json=body, headers=caller.scim)

    return probe


def writing(method: str, path: str, body: Callable[[Org], object]) -> Probe:
    async def probe(http: httpx.AsyncClient, owner: Org, caller: Org) -> httpx.Response:
        url = BASE + path.format(user=owner.user_id, group=owner.group_id)
        return await http.request(method, url, json=body(owner), headers=caller.scim)

    return probe


DEACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
EPOCH = "2000-01-01T00:00:00+00:00"
# (method, route) → probes that read the owner's data: each must show it to the owner and hide it from others.
READS: dict[tuple[str, str], list[Probe]] = {
    ("GET", "/scim/v2/Users"): [
        reading("GET", "/scim/v2/Users"),
        reading("GET", "/scim/v2/Users", filter='userName eq "{user_name}"'),
    ],
    ("GET", "/scim/v2/Users/{id}"): [reading("GET", "/scim/v2/Users/{user}")],
    ("GET", "/scim/v2/Groups"): [
        reading("GET", "/scim/v2/Groups"),
        reading("GET", "/scim/v2/Groups", filter='members[value eq "{user}"]'),
    ],
    ("GET", "/scim/v2/Groups/{id}"): [reading("GET", "/scim/v2/Groups/{group}")],
    ("POST", "/scim/v2/Users/.search"): [
        searching("/scim/v2/Users/.search"),
        searching("/scim/v2/Users/.search", 'userName eq "{user_name}"'),
    ],
    ("POST", "/scim/v2/Groups/.search"): [searching("/scim/v2/Groups/.search")],
    ("POST", "/scim/v2/.search"): [
        searching("/scim/v2/.search"),
        searching("/scim/v2/.search", 'userName eq "{user_name}"'),
    ],
    ("GET", "/audit/history"): [
        reading("GET", "/audit/history", auditor=True),
        reading("GET", "/audit/history", auditor=True, user="{user}"),
    ],
    ("GET", "/audit/as-of"): [reading("GET", "/audit/as-of", auditor=True, at="{now}")],
    ("GET", "/api/v1/orgs/{org}"): [managing("GET", "/api/v1/orgs/{org}")],
    ("GET", "/api/v1/orgs/{org}/access"): [
        checking_access(),
        checking_access(by_names=True),
        checking_access(callers_path=True),
        checking_access(by_names=True, callers_path=True),
    ],
    ("GET", "/api/v1/orgs/{org}/projects"): [
        managing("GET", "/api/v1/orgs/{org}/projects"),
        managing("GET", "/api/v1/orgs/{org}/projects", archived="true", limit="1"),
    ],
    ("GET", "/api/v1/orgs/{org}/roles"): [managing("GET", "/api/v1/orgs/{org}/roles")],
    ("GET", "/api/v1/orgs/{org}/groups"): [managing("GET", "/api/v1/orgs/{org}/groups")],
    ("GET", "/api/v1/orgs/{org}/groups/{group}/members"): [
        managing("GET", "/api/v1/orgs/{org}/groups/{group}/members")
    ],
    ("GET", "/api/v1/orgs/{org}/users"): [
        managing("GET", "/api/v1/orgs/{org}/users"),
        managing("GET", "/api/v1/orgs/{org}/users", user_name="iso.", status="active"),
    ],
    ("GET", "/api/v1/orgs/{org}/users/{user}"): [managing("GET", "/api/v1/orgs/{org}/users/{user}")],
    ("GET", "/api/v1/orgs/{org}/connection"): [
        managing("GET", "/api/v1/orgs/{org}/connection"),
        managing("GET", "/api/v1/orgs/{org}/connection", limit="1"),
    ],
    ("GET", "/api/v1/orgs/{org}/tokens"): [
        managing("GET", "/api/v1/orgs/{org}/tokens"),
        managing("GET", "/api/v1/orgs/{org}/tokens", limit="1"),
    ],
    # Waiting for the first event: the feed reads commit-safely, and another transaction on the server may
    # still hide the owner's events for a moment.
    ("GET", "/api/v1/orgs/{org}/events"): [
        managing("GET", "/api/v1/orgs/{org}/events", wait="10"),
        managing(
            "GET", "/api/v1/orgs/{org}/events", types="group.member_added,user.created", limit="1", wait="10"
        ),
    ],
    ("GET", "/audit/access"): [
        reading("GET", "/audit/access", auditor=True, **{"from": EPOCH, "to": "{now}"}),
        reading("GET", "/audit/access", auditor=True, user="{user}", **{"from": EPOCH, "to": "{now}"}),
    ],
}
# (method, route) → writes aimed at the owner's resources: refused to others, the resources untouched.
WRITES: dict[tuple[str, str], Probe] = {
    ("PUT", "/scim/v2/Users/{id}"): writing("PUT", "/scim/v2/Users/{user}", lambda owner: okta_user("x@y.z")),
    ("PATCH", "/scim/v2/Users/{id}"): writing("PATCH", "/scim/v2/Users/{user}", lambda owner: DEACTIVATE),
    ("DELETE", "/scim/v2/Users/{id}"): writing("DELETE", "/scim/v2/Users/{user}", lambda owner: None),
    ("PUT", "/scim/v2/Groups/{id}"): writing(
        "PUT", "/scim/v2/Groups/{group}", lambda owner: {"displayName": owner.group_name, "members": []}
    ),
    ("PATCH", "/scim/v2/Groups/{id}"): writing(
        "PATCH",
        "/scim/v2/Groups/{group}",
        lambda owner: {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "members", "value": []}],
        },
    ),
    ("DELETE", "/scim/v2/Groups/{id}"): writing("DELETE", "/scim/v2/Groups/{group}", lambda owner: None),
}

# (method, route) → (what the owner does first, if anything; a change through the management API aimed at the
# owner's organization): refused to others as not found, the owner's log untouched; done for the owner.
API_WRITES: dict[tuple[str, str], tuple[Probe | None, Probe]] = {
    ("POST", "/api/v1/orgs/{org}/projects"): (
        None,
        managing_write("POST", "/api/v1/orgs/{org}/projects", _named("P")),
    ),
    ("PATCH", "/api/v1/orgs/{org}/projects/{ref}"): (
        None,
        managing_write("PATCH", "/api/v1/orgs/{org}/projects/{project}", _named("P")),
    ),
    ("POST", "/api/v1/orgs/{org}/projects/{ref}/archive"): (
        None,
        managing_write("POST", "/api/v1/orgs/{org}/projects/{project}/archive"),
    ),
    ("POST", "/api/v1/orgs/{org}/roles"): (
        None,
        managing_write("POST", "/api/v1/orgs/{org}/roles", _named("R")),
    ),
    ("PATCH", "/api/v1/orgs/{org}/roles/{ref}"): (
        None,
        managing_write("PATCH", "/api/v1/orgs/{org}/roles/{role}", _named("R")),
    ),
    ("POST", "/api/v1/orgs/{org}/roles/{ref}/archive"): (
        None,
        managing_write("POST", "/api/v1/orgs/{org}/roles/{role}/archive"),
    ),
    ("POST", "/api/v1/orgs/{org}/groups/{group}/members"): (
        None,
        managing_write(
            "POST", "/api/v1/orgs/{org}/groups/{unlinked}/members", lambda owner: {"user": owner.user_id}
        ),
    ),
    ("DELETE", "/api/v1/orgs/{org}/groups/{group}/members/{user}"): (
        managing_write(
            "POST", "/api/v1/orgs/{org}/groups/{unlinked}/members", lambda owner: {"user": owner.user_id}
        ),
        managing_write("DELETE", "/api/v1/orgs/{org}/groups/{unlinked}/members/{user}"),
    ),
    ("POST", "/api/v1/orgs/{org}/users"): (
        None,
        managing_write(
            "POST",
            "/api/v1/orgs/{org}/users",
            lambda owner: {"userName": f"{uuid.uuid4().hex[:8]}@x.example"},
        ),
    ),
    ("DELETE", "/api/v1/orgs/{org}/users/{user}"): (
        None,
        managing_write("DELETE", "/api/v1/orgs/{org}/users/{user}"),
    ),
    ("POST", "/api/v1/orgs/{org}/users/{user}/restore"): (
        managing_write("DELETE", "/api/v1/orgs/{org}/users/{user}"),
        managing_write("POST", "/api/v1/orgs/{org}/users/{user}/restore"),
    ),
    ("POST", "/api/v1/orgs/{org}/users/{user}/erasure"): (
        managing_write("DELETE", "/api/v1/orgs/{org}/users/{user}"),
        managing_write(
            "POST",
            "/api/v1/orgs/{org}/users/{user}/erasure",
            lambda owner: {"reason": "ticket 7 (isolation)"},
        ),
    ),
}


SEPARATE: set[tuple[str, str]] = {
    ("POST", "/scim/v2/Users"),
    ("POST", "/scim/v2/Groups"),
    ("GET", "/audit/head"),
    ("GET", "/audit/verify"),
    # A zip, whose compressed members no marker can be looked for in: tests/e2e/test_evidence_bundles.py,
    # test_get_audit_export_streams_the_auditors_own_organizations_bundle.
    ("GET", "/audit/export"),
    # Platform tokens alone: no organization's data until one is created.
    ("POST", "/api/v1/orgs"),
    # Platform tokens alone, every organization's events by design; an admin token is refused
    # (tests/e2e/test_events_api.py).
    ("GET", "/api/v1/events"),
    # Console links and sessions: tests/console/test_sign_in.py, test_a_link_of_one_organization_signs_into_no_other.
    ("POST", "/api/v1/orgs/{org}/portal-links"),
    ("DELETE", "/api/v1/orgs/{org}/portal-sessions"),
    # A setting of the organization, not events: tests/e2e/test_erasure_api.py,
    # test_retention_of_another_organization_is_404_and_unchanged.
    ("GET", "/api/v1/orgs/{org}/retention"),
    ("PUT", "/api/v1/orgs/{org}/retention"),
    # Tokens are not events: test_token_writes_reach_no_other_organization.
    ("POST", "/api/v1/orgs/{org}/tokens"),
    ("DELETE", "/api/v1/orgs/{org}/tokens/{token_id}"),
    # Webhooks are not events: tests/e2e/test_webhook_routes.py, test_no_webhook_route_reaches_another_organization.
    *(
        (method, f"/api/v1/orgs/{{org}}/webhooks{rest}")
        for method, rest in (
            ("GET", ""),
            ("POST", ""),
            ("GET", "/{webhook}"),
            ("PATCH", "/{webhook}"),
            ("DELETE", "/{webhook}"),
            ("POST", "/{webhook}/rotate"),
            ("POST", "/{webhook}/pause"),
            ("POST", "/{webhook}/resume"),
            ("POST", "/{webhook}/replay"),
            ("GET", "/{webhook}/deliveries"),
        )
    ),
}


def test_every_route_is_probed() -> None:
    assert bearer_routes() == NOT_ORG_DATA | set(READS) | set(WRITES) | set(API_WRITES) | SEPARATE


@pytest.fixture
async def orgs(http: httpx.AsyncClient, services: Services, pool: asyncpg.Pool) -> tuple[Org, Org]:
    return await populated_org(http, services, pool), await populated_org(http, services, pool)


@pytest.mark.parametrize("route", sorted(READS), ids=" ".join)
async def test_reads_show_an_organizations_data_to_it_alone(
    http: httpx.AsyncClient, orgs: tuple[Org, Org], route: tuple[str, str]
) -> None:
    owner, other = orgs
    for probe in READS[route]:
        seen = await probe(http, owner, owner)
        assert seen.status_code == 200
        assert any(marker in seen.text for marker in owner.markers), "the probe must be able to see a leak"
        leaked = await probe(http, owner, other)
        assert leaked.status_code in (200, 404)
        # What the caller itself sent (an id in the path, a name in a filter) may be echoed in an error.
        asked = unquote(str(leaked.request.url))
        assert not [marker for marker in owner.markers if marker in leaked.text and marker not in asked]


@pytest.mark.parametrize("route", sorted(WRITES), ids=" ".join)
async def test_writes_to_another_organizations_resources_are_404_and_change_nothing(
    http: httpx.AsyncClient, orgs: tuple[Org, Org], route: tuple[str, str], pool: asyncpg.Pool
) -> None:
    owner, other = orgs

    async def owners_log() -> list[tuple[str, int]]:
        rows = await pool.fetch(
            "SELECT type, version FROM events WHERE org_id = $1 ORDER BY position", owner.tenant.org.org_id
        )
        return [(row["type"], row["version"]) for row in rows]

    before = await owners_log()
    response = await WRITES[route](http, owner, other)
    assert response.status_code == 404
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert await owners_log() == before
    # The same request from the owner does change the owner's data: the probe aims at something real.
    assert (await WRITES[route](http, owner, owner)).status_code in (200, 204)
    assert await owners_log() != before


@pytest.mark.parametrize("route", sorted(API_WRITES), ids=" ".join)
async def test_management_api_changes_to_another_organization_are_404_and_change_nothing(
    http: httpx.AsyncClient, orgs: tuple[Org, Org], route: tuple[str, str], pool: asyncpg.Pool
) -> None:
    owner, other = orgs
    prepare, probe = API_WRITES[route]
    if prepare is not None:
        assert (await prepare(http, owner, owner)).status_code < 300

    async def owners_log() -> list[tuple[str, int]]:
        rows = await pool.fetch(
            "SELECT type, version FROM events WHERE org_id = $1 ORDER BY position", owner.tenant.org.org_id
        )
        return [(row["type"], row["version"]) for row in rows]

    before = await owners_log()
    response = await probe(http, owner, other)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["type"] == "not_found"
    assert not [
        marker
        for marker in owner.markers
        if marker in response.text and marker not in str(response.request.url)
    ]
    assert await owners_log() == before
    done = await probe(http, owner, owner)
    assert done.status_code in (200, 201), done.text
    assert await owners_log() != before


async def test_creating_takes_no_hold_of_another_organizations_names(
    http: httpx.AsyncClient, orgs: tuple[Org, Org]
) -> None:
    owner, other = orgs
    created = await http.post("/Users", json=okta_user(owner.user_name), headers=other.scim)
    assert created.status_code == 201, "the same userName may exist in two organizations"
    assert created.json()["id"] != owner.user_id
    linked = await http.post("/Groups", json={"displayName": owner.group_name}, headers=other.scim)
    assert linked.status_code == 403
    assert owner.group_id not in linked.text


async def test_each_auditor_verifies_its_own_organizations_seals_only(
    http: httpx.AsyncClient, orgs: tuple[Org, Org], runner: Runner
) -> None:
    owner, other = orgs

    async def sealed_head(org: Org) -> str:
        for _ in range(100):
            head: str | None = (await http.get(f"{BASE}/audit/head", headers=org.auditor)).json()["head"]
            if head is not None:
                return head
            await asyncio.sleep(0.05)
        raise AssertionError("the runner sealed nothing within 5 s")

    owners_head, others_head = await sealed_head(owner), await sealed_head(other)
    assert owners_head != others_head
    mine = await http.get(f"{BASE}/audit/verify", params={"head": owners_head}, headers=owner.auditor)
    assert mine.json()["intact"] is True
    # Another organization's head does not verify against this one's chain.
    theirs = await http.get(f"{BASE}/audit/verify", params={"head": owners_head}, headers=other.auditor)
    assert theirs.status_code == 400 or theirs.json()["intact"] is False


async def test_token_writes_reach_no_other_organization(
    http: httpx.AsyncClient, orgs: tuple[Org, Org], pool: asyncpg.Pool
) -> None:
    owner, other = orgs
    owner_id = owner.tenant.org.org_id

    async def owners_tokens() -> list[tuple[str, str, bool]]:
        rows = await pool.fetch(
            "SELECT token_id, scope, revoked_at IS NULL AS active FROM api_tokens WHERE org_id = $1 "
            "ORDER BY token_id",
            owner_id,
        )
        return [(str(row["token_id"]), row["scope"], row["active"]) for row in rows]

    before = await owners_tokens()
    tokens = f"{BASE}/api/v1/orgs/{owner_id}/tokens"
    revoke = f"{tokens}/{owner.tenant.token_id}"
    issued = await http.post(tokens, json={"scope": "auditor"}, headers=other.admin)
    revoked = await http.delete(revoke, headers=other.admin)
    # The caller's own organization's path does not reach the owner's token either.
    sideways = await http.delete(
        f"{BASE}/api/v1/orgs/{other.tenant.org.org_id}/tokens/{owner.tenant.token_id}", headers=other.admin
    )
    for response in (issued, revoked, sideways):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"
    assert await owners_tokens() == before
    # The same requests from the owner do change the owner's tokens: the probes aim at something real.
    assert (await http.post(tokens, json={"scope": "auditor"}, headers=owner.admin)).status_code == 201
    assert (await http.delete(revoke, headers=owner.admin)).status_code == 204
    assert len(await owners_tokens()) == len(before) + 1


async def test_every_route_with_organization_data_checks_its_scope(
    http: httpx.AsyncClient, orgs: tuple[Org, Org]
) -> None:
    owner, _ = orgs
    checked = set()
    for method, path in sorted(bearer_routes() - NOT_ORG_DATA):
        url = api_url(path.replace("{id}", owner.user_id).replace("{ref}", "{project}"), owner)
        api = path.startswith("/api/")
        wrong_scope = owner.scim if path.startswith(("/audit", "/api/")) else owner.auditor
        body = {} if method in ("POST", "PUT", "PATCH") else None
        refused = await http.request(method, url, headers=wrong_scope, json=body)
        assert refused.status_code == 403, (method, path, refused.status_code)
        assert "scope" in (refused.json()["error"]["message"] if api else refused.json()["detail"])
        anonymous = await http.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        checked.add((method, path))
    assert len(checked) == len(set(READS) | set(WRITES) | set(API_WRITES) | SEPARATE)
