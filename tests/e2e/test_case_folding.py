# ruff: noqa: RUF001 -- confusable letters are what these compare
"""Ignoring case means one thing over HTTP: uniqueness, filters and PATCH value filters fold alike (issue 18.4).

Each case stores one spelling and sends another that folds to the same key (Unicode full case folding after
NFKC): Turkish dotted İ, final sigma, ß against SS, full-width letters.
"""

import asyncio
import uuid

import httpx
import pytest

from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.errors import NameTaken
from tests.conftest import Tenant, okta_user
from tests.e2e.test_groups_api import ADMIN

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# (stored, sent): the same name ignoring case.
SPELLINGS = [
    pytest.param("İlker.Yılmaz", "i̇LKER.YıLMAZ", id="dotted-capital-i"),
    pytest.param("ΟΔΥΣΣΕΑΣ", "οδυσσεας", id="final-sigma"),
    pytest.param("Straße", "STRASSE", id="sharp-s"),
    pytest.param("ＡＢＣ.Kato", "abc.kato", id="full-width"),
]


def unique(local: str) -> str:
    return f"{local}.{uuid.uuid4().hex[:8]}@example.com"


async def user_names(scim: httpx.AsyncClient, scim_filter: str) -> list[str]:
    response = await scim.get("/Users", params={"filter": scim_filter})
    assert response.status_code == 200, response.text
    return [user["userName"] for user in response.json()["Resources"]]


@pytest.mark.parametrize(("stored", "sent"), SPELLINGS)
async def test_oktas_search_then_create_finds_the_user_it_created(
    scim: httpx.AsyncClient, stored: str, sent: str
) -> None:
    suffix = f".{uuid.uuid4().hex[:8]}@example.com"
    created = await scim.post("/Users", json=okta_user(stored + suffix))
    assert created.status_code == 201, created.text
    # Okta searches with the name as it has it, then creates only if nothing was found.
    assert await user_names(scim, f'userName eq "{stored + suffix}"') == [stored + suffix]
    assert await user_names(scim, f'userName eq "{sent + suffix}"') == [stored + suffix]
    assert await user_names(scim, f'userName sw "{sent}."') == [stored + suffix]
    assert await user_names(scim, f'userName ew "{suffix.upper()}"') == [stored + suffix]
    assert await user_names(scim, f'userName co "{sent[1:]}"') == [stored + suffix]
    again = await scim.post("/Users", json=okta_user(sent + suffix))
    assert again.status_code == 409, again.text


async def test_dotless_i_is_another_letter_for_uniqueness_and_filters(scim: httpx.AsyncClient) -> None:
    suffix = f".{uuid.uuid4().hex[:8]}@example.com"
    for name in ("ılker" + suffix, "ilker" + suffix, "İlker" + suffix):
        response = await scim.post("/Users", json=okta_user(name))
        assert response.status_code == 201, response.text
    assert await user_names(scim, f'userName eq "ILKER{suffix}"') == ["ilker" + suffix]
    assert await user_names(scim, f'userName eq "ıLKER{suffix}"') == ["ılker" + suffix]
    assert await user_names(scim, f'userName eq "i̇lker{suffix}"') == ["İlker" + suffix]


async def test_twenty_concurrent_posts_of_spellings_of_one_name_give_one_201(scim: httpx.AsyncClient) -> None:
    suffix = f".{uuid.uuid4().hex[:8]}@example.com"
    spellings = ["straße", "STRASSE", "Strasse", "STRAẞE", "ｓｔｒａｓｓｅ"]
    responses = await asyncio.gather(
        *(scim.post("/Users", json=okta_user(spellings[index % 5] + suffix)) for index in range(20))
    )
    assert sorted(response.status_code for response in responses) == [201] + [409] * 19
    assert len(await user_names(scim, f'userName eq "strasse{suffix}"')) == 1


async def test_a_patch_value_filter_and_a_list_filter_match_the_same_emails(scim: httpx.AsyncClient) -> None:
    address = unique("ＡＢＣ.Σοφία")
    body = okta_user(unique("kato"), emails=[{"value": address, "type": "work", "primary": True}])
    user = (await scim.post("/Users", json=body)).json()
    sent = address.replace("ＡＢＣ", "abc").upper()
    assert await user_names(scim, f'emails[value eq "{sent}"]') == [body["userName"]]
    patched = await scim.patch(
        f"/Users/{user['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": f'emails[value eq "{sent}"].type', "value": "home"}],
        },
    )
    assert patched.status_code == 200, patched.text
    assert [email["type"] for email in patched.json()["emails"]] == ["home"]


async def test_oktas_link_by_display_name_finds_groups_named_with_any_letters(
    scim: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    org_id = tenant.org.org_id
    await services.catalog.create(PROJECT, org_id, "İzmir", ADMIN)
    await services.catalog.create(ROLE, org_id, "ΣΥΜΒΟΥΛΟΣ", ADMIN)
    await services.catalog.create(ROLE, org_id, "Straße", ADMIN)
    for name in ("Statsig-İzmir-ΣΥΜΒΟΥΛΟΣ", "statsig-i̇zmir-συμβουλος", "STATSIG-İZMIR-STRASSE"):
        response = await scim.get("/Groups", params={"filter": f'displayName eq "{name}"'})
        assert response.status_code == 200, response.text
        assert response.json()["totalResults"] == 1, name
    response = await scim.get("/Groups", params={"filter": 'displayName sw "STATSIG-i̇ZMIR-σ"'})
    assert [group["displayName"] for group in response.json()["Resources"]] == ["Statsig-İzmir-ΣΥΜΒΟΥΛΟΣ"]


async def test_catalog_names_are_unique_under_the_same_folding(services: Services, tenant: Tenant) -> None:
    org_id = tenant.org.org_id
    await services.catalog.create(PROJECT, org_id, "Straße", ADMIN)
    with pytest.raises(NameTaken):
        await services.catalog.create(PROJECT, org_id, "STRASSE", ADMIN)
    await services.catalog.create(ROLE, org_id, "ＯＰＳ", ADMIN)
    with pytest.raises(NameTaken):
        await services.catalog.create(ROLE, org_id, "ops", ADMIN)
    await services.catalog.rename(ROLE, org_id, "Ops", "Operations", ADMIN)  # found by a folded name
