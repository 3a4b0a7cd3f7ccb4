"""Changing an organization's declared schema while users hold values under it: what a redeclaration may
change and what it refuses, values sent right after a declaration, multi-valued simple attributes in
filters and sorts, and stored values no filter, sort or deactivation may trip over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from app.infrastructure.settings import Settings
from app.services.container import Services
from app.services.org_schemas import parse
from domain.errors import DomainError
from domain.org_schemas import OrgSchema, schema_id_for
from eventstore.records import Metadata
from scim.declaration import to_document
from tests.conftest import Tenant, new_tenant, okta_user
from tests.e2e.test_custom_attributes import ACME, ACME_ATTRIBUTES, declare, provision
from tests.e2e.test_groups_api import patch
from tests.e2e.test_operations import serving
from tests.integration.forgery import open_ledger

DEACTIVATE = patch({"op": "replace", "value": {"active": False}})


def attributes(**changed: dict[str, Any]) -> list[dict[str, Any]]:
    """ACME's attributes, with those named changed as given."""
    return [{**attribute, **changed.get(attribute["name"], {})} for attribute in ACME_ATTRIBUTES]


async def ids(scim: httpx.AsyncClient, **params: str) -> list[str]:
    response = await scim.get("/Users", params=params)
    assert response.status_code == 200, response.text
    return [resource["id"] for resource in response.json()["Resources"]]


@pytest.mark.parametrize(
    ("redeclared", "named", "said"),
    [
        (attributes(badgeNumber={"type": "string"}), "badgeNumber", "a single integer"),
        (attributes(skills={"multiValued": False}), "skills", "a multi-valued string"),
        (attributes(badgeNumber={"required": True}), "badgeNumber", "cannot become required"),
        ([*ACME_ATTRIBUTES, {"name": "floor", "required": True}], "floor", "cannot become required"),
    ],
    ids=["type", "multiValued", "made required", "new required"],
)
async def test_a_redeclaration_that_stored_values_could_not_satisfy_is_refused_naming_the_attribute(
    scim: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    redeclared: list[dict[str, Any]],
    named: str,
    said: str,
) -> None:
    await declare(services, tenant)
    created = await provision(scim, **{ACME: {"costCode": "CC", "badgeNumber": 42, "skills": ["py"]}})
    with pytest.raises(DomainError) as refused:
        await declare(services, tenant, ACME, redeclared)
    assert f"Attribute '{named}'" in str(refused.value)
    assert said in str(refused.value)
    # Nothing changed: Okta's deactivation, its profile push and the filters still work on the stored value.
    deactivated = await scim.patch(f"/Users/{created['id']}", json=DEACTIVATE)
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False
    pushed = await scim.put(
        f"/Users/{created['id']}",
        json=okta_user(
            created["userName"], **{ACME: {"costCode": "CC", "badgeNumber": 43, "skills": ["py"]}}
        ),
    )
    assert pushed.status_code == 200, pushed.text
    assert await ids(scim, filter=f"{ACME}:badgeNumber gt 5", sortBy=f"{ACME}:badgeNumber") == [created["id"]]


async def test_a_changed_type_is_refused_with_what_to_do_instead(services: Services, tenant: Tenant) -> None:
    await declare(services, tenant)
    with pytest.raises(DomainError) as refused:
        await declare(services, tenant, ACME, attributes(badgeNumber={"type": "string"}))
    assert "declare a new attribute name" in str(refused.value)


async def test_an_attribute_dropped_then_declared_again_with_another_type_is_refused(
    services: Services, tenant: Tenant
) -> None:
    await declare(services, tenant)
    await declare(services, tenant, ACME, [{"name": "costCode"}])
    with pytest.raises(DomainError, match="Attribute 'badgeNumber'"):
        await declare(
            services, tenant, ACME, [{"name": "costCode"}, {"name": "badgeNumber", "type": "string"}]
        )
    # Declared again with its first shape, it is accepted.
    assert (
        await declare(
            services, tenant, ACME, [{"name": "costCode"}, {"name": "badgeNumber", "type": "integer"}]
        )
        == 3
    )


async def test_a_sub_attributes_changed_type_is_refused(services: Services, tenant: Tenant) -> None:
    def badge(sub_type: str) -> list[dict[str, Any]]:
        return [{"name": "badge", "type": "complex", "subAttributes": [{"name": "number", "type": sub_type}]}]

    await declare(services, tenant, ACME, badge("integer"))
    with pytest.raises(DomainError, match=r"Attribute 'badge\.number'"):
        await declare(services, tenant, ACME, badge("string"))


async def test_a_redeclaration_may_add_optional_attributes_drop_some_and_relax_required(
    services: Services, tenant: Tenant
) -> None:
    await declare(services, tenant)
    relaxed = [*attributes(costCode={"required": False}), {"name": "floor", "type": "integer"}]
    assert await declare(services, tenant, ACME, relaxed) == 2
    assert await declare(services, tenant, ACME, relaxed[1:]) == 3


async def test_a_urn_declared_again_in_another_case_keeps_its_first_spelling_and_the_stored_values(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    await declare(services, tenant)
    created = await provision(scim, **{ACME: {"costCode": "CC-1"}})
    with pytest.raises(DomainError) as refused:
        await declare(services, tenant, ACME.upper())
    assert f"already declared as '{ACME}'" in str(refused.value)
    fetched = (await scim.get(f"/Users/{created['id']}")).json()
    assert fetched[ACME] == {"costCode": "CC-1"}
    schemas = [schema["id"] for schema in (await scim.get("/Schemas")).json()["Resources"]]
    assert ACME in schemas
    assert ACME.upper() not in schemas


async def test_a_multi_valued_simple_attribute_is_filtered_by_any_value_and_sorted_by_its_first(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    await declare(services, tenant)
    python = await provision(scim, **{ACME: {"costCode": "a", "skills": ["SQL", "Py"]}})
    go = await provision(scim, **{ACME: {"costCode": "b", "skills": ["go"]}})
    none = await provision(scim, **{ACME: {"costCode": "c", "skills": []}})
    assert await ids(scim, filter=f'{ACME}:skills eq "py"') == [python["id"]]  # caseExact false: folded
    assert await ids(scim, filter='skills eq "PY"') == [python["id"]]  # the short form
    assert await ids(scim, filter=f'{ACME}:skills sw "g"') == [go["id"]]
    assert sorted(await ids(scim, filter=f"{ACME}:skills pr")) == sorted([python["id"], go["id"]])
    assert await ids(scim, filter=f"not ({ACME}:skills pr)") == [none["id"]]
    # The first value sorts: "go" before "SQL", ignoring case; a user without one last.
    assert await ids(scim, sortBy=f"{ACME}:skills") == [go["id"], python["id"], none["id"]]
    assert await ids(scim, sortBy=f"{ACME}:skills", sortOrder="descending") == [
        python["id"],
        go["id"],
        none["id"],
    ]


async def test_a_case_exact_multi_valued_attribute_compares_its_values_exactly(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    await declare(services, tenant, ACME, [{"name": "codes", "multiValued": True, "caseExact": True}])
    created = await provision(scim, **{ACME: {"codes": ["Ab"]}})
    assert await ids(scim, filter=f'{ACME}:codes eq "Ab"') == [created["id"]]
    assert await ids(scim, filter=f'{ACME}:codes eq "ab"') == []


@asynccontextmanager
async def serving_scim(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as client:
        client.base_url = httpx.URL("http://scim.test/scim/v2")
        yield client


async def test_values_sent_right_after_a_declaration_are_stored_through_a_token_already_cached(
    settings: Settings, services: Services, pool: asyncpg.Pool
) -> None:
    tenant = await new_tenant(pool)
    cached = msgspec.structs.replace(settings, token_cache_seconds=3600)
    async with serving_scim(cached) as scim:
        scim.headers.update(tenant.headers)
        # Caches the token, with the schema version 0.
        before = await provision(scim, **{ACME: {"costCode": "dropped"}})
        assert ACME not in before

        await declare(services, tenant)
        created = await provision(scim, **{ACME: {"costCode": "CC-1", "badgeNumber": 7}})
        assert created[ACME] == {"costCode": "CC-1", "badgeNumber": 7}
        patched = await scim.patch(
            f"/Users/{before['id']}",
            json=patch({"op": "add", "path": f"{ACME}:costCode", "value": "x"}),
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()[ACME] == {"costCode": "x"}

        # Declared again with a new attribute: a profile push carrying it keeps it rather than dropping it.
        await declare(services, tenant, ACME, [*ACME_ATTRIBUTES, {"name": "floor", "type": "integer"}])
        pushed = await scim.put(
            f"/Users/{created['id']}",
            json=okta_user(created["userName"], **{ACME: {"costCode": "CC-1", "floor": 3}}),
        )
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()[ACME] == {"costCode": "CC-1", "floor": 3}
        entra = await scim.patch(
            f"/Users/{created['id']}",
            json=patch({"op": "Replace", "value": {f"{ACME}:floor": 4}}),
        )
        assert entra.json()[ACME] == {"costCode": "CC-1", "floor": 4}


async def test_values_stored_before_an_incompatible_redeclaration_never_fail_a_filter_a_sort_or_a_deactivation(
    server_url: str, settings: Settings
) -> None:
    """Before redeclarations were checked, an admin could turn a string into an integer, a number or a date,
    or a single value into a multi-valued one, with profiles holding the old values. In a database of its
    own, as that declaration is one the service now refuses."""
    async with open_ledger(server_url) as ledger:
        services, own = ledger.services, msgspec.structs.replace(settings, database_url=ledger.url)
        tenant = await new_tenant(ledger.pool)
        string_badges = attributes(badgeNumber={"type": "string"}, costCode={"required": False})
        await declare(
            services,
            tenant,
            ACME,
            [*string_badges, {"name": "hired"}, {"name": "remote"}, {"name": "langs"}],
        )
        async with serving_scim(own) as scim:
            scim.headers.update(tenant.headers)
            odd = await provision(
                scim,
                **{
                    ACME: {
                        "badgeNumber": "B-12",
                        "skills": ["x"],
                        "hired": "2026-02-30T00:00:00Z",
                        "remote": "yes",
                        "langs": "en",
                    }
                },
            )
            number = await provision(
                scim, **{ACME: {"badgeNumber": "20", "hired": "2026-02-03T00:00:00Z", "remote": "true"}}
            )
            await _record_unchecked_redeclaration(
                services,
                tenant,
                [
                    *attributes(costCode={"required": False}),
                    {"name": "hired", "type": "dateTime"},
                    {"name": "remote", "type": "boolean"},
                    {"name": "langs", "multiValued": True},
                    {"name": "costCenter", "required": True},
                ],
            )
            assert await ids(scim, filter=f"{ACME}:badgeNumber gt 5") == [number["id"]]
            assert await ids(scim, sortBy=f"{ACME}:badgeNumber") == [number["id"], odd["id"]]
            assert await ids(scim, filter=f'{ACME}:hired gt "2026-01-01T00:00:00Z"') == [number["id"]]
            assert await ids(scim, sortBy=f"{ACME}:hired", sortOrder="descending") == [
                number["id"],
                odd["id"],
            ]
            assert await ids(scim, filter=f"{ACME}:remote eq true") == [number["id"]]
            assert await ids(scim, sortBy=f"{ACME}:remote") == [number["id"], odd["id"]]
            assert await ids(scim, filter=f'{ACME}:langs eq "en" or {ACME}:langs pr') == []
            assert sorted(await ids(scim, sortBy=f"{ACME}:langs")) == sorted([number["id"], odd["id"]])
            # Okta's deactivation, and Entra's with a boolean as a string, though the profile would no longer
            # validate under the declaration (a string badge, a missing required costCenter).
            deactivated = await scim.patch(f"/Users/{odd['id']}", json=DEACTIVATE)
            assert deactivated.status_code == 200, deactivated.text
            assert deactivated.json()["active"] is False
            assert deactivated.json()[ACME]["badgeNumber"] == "B-12"
            entra = patch({"op": "Replace", "path": "active", "value": "True"})
            reactivated = await scim.patch(f"/Users/{odd['id']}", json=entra)
            assert reactivated.status_code == 200, reactivated.text
            assert reactivated.json()["active"] is True


async def _record_unchecked_redeclaration(
    services: Services, tenant: Tenant, redeclared: list[dict[str, Any]]
) -> None:
    """What `schema extend` recorded before it checked redeclarations."""
    document = to_document(parse(msgspec.json.encode({"id": ACME, "attributes": redeclared})))
    schema_id = schema_id_for(str(tenant.org.org_id), ACME)
    async with services.store.transaction() as transaction:
        schema = (await transaction.load(tenant.org.org_id, [schema_id]))[schema_id]
        assert isinstance(schema, OrgSchema)
        schema._redeclare(document)
        await transaction.save(tenant.org.org_id, [schema], Metadata(actor="admin:test"))
