"""Client input that once made a 500: each class of it is a SCIM 400 naming what to fix."""

from __future__ import annotations

import random
import uuid

import httpx
import pytest

from scim.schema import MAX_IDENTIFIER_LENGTH
from tests.conftest import okta_user
from tests.e2e.test_users_api import PATCH_OP, assert_scim_error, create


def _unique_text(length: int) -> str:
    """Random characters outside the Basic Multilingual Plane: 4 bytes each in UTF-8, and incompressible, so
    an index entry holding them is as large as the text allows."""
    chooser = random.Random(length)
    return "".join(chr(chooser.randrange(0x20000, 0x2A6DF)) for _ in range(length))


@pytest.mark.parametrize("attribute", ["userName", "externalId"])
async def test_an_identifier_longer_than_the_limit_is_a_400_naming_it(
    scim: httpx.AsyncClient, attribute: str
) -> None:
    too_long = "a" * 3000 + "@example.com"
    body = okta_user(f"{uuid.uuid4().hex}@example.com")
    body[attribute] = _unique_text(3000)
    refused = assert_scim_error(await scim.post("/Users", json=body), 400, "invalidValue")
    assert f"'{attribute}'" in refused["detail"]
    assert f"{MAX_IDENTIFIER_LENGTH:,}" in refused["detail"]

    user = await create(scim)
    put = {**okta_user(user["userName"]), attribute: too_long}
    refused = assert_scim_error(await scim.put(f"/Users/{user['id']}", json=put), 400, "invalidValue")
    assert f"'{attribute}'" in refused["detail"]
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": attribute, "value": too_long}]}
    refused = assert_scim_error(await scim.patch(f"/Users/{user['id']}", json=patch), 400, "invalidValue")
    assert f"'{attribute}'" in refused["detail"]
    assert (await scim.get(f"/Users/{user['id']}")).json()[attribute] == user[attribute]


async def test_identifiers_at_the_limit_fit_the_index_whatever_their_characters(
    scim: httpx.AsyncClient,
) -> None:
    body = okta_user("x@example.com")
    body["userName"] = _unique_text(MAX_IDENTIFIER_LENGTH)
    body["externalId"] = _unique_text(MAX_IDENTIFIER_LENGTH - 1)
    response = await scim.post("/Users", json=body)
    assert response.status_code == 201, response.text
    found = await scim.get("/Users", params={"filter": f'userName eq "{body["userName"]}"'})
    assert found.json()["totalResults"] == 1


@pytest.mark.parametrize(
    "instant",
    [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00.000001+00:01",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:00:00-01:00",
    ],
)
@pytest.mark.parametrize("endpoint", ["/Users", "/Groups"])
@pytest.mark.parametrize("attribute", ["meta.lastModified", "meta.created"])
async def test_a_date_time_an_offset_carries_past_the_calendar_is_an_invalid_filter(
    scim: httpx.AsyncClient, instant: str, endpoint: str, attribute: str
) -> None:
    response = await scim.get(endpoint, params={"filter": f'{attribute} gt "{instant}"'})
    refused = assert_scim_error(response, 400, "invalidFilter")
    assert instant in refused["detail"]


@pytest.mark.parametrize(
    "instant", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00", "0001-01-01T14:00:00+14:00"]
)
async def test_the_calendar_s_own_ends_still_filter(scim: httpx.AsyncClient, instant: str) -> None:
    response = await scim.get("/Users", params={"filter": f'meta.lastModified ge "{instant}"'})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "path",
    [
        "emails[" + "not (" * 400 + 'type eq "work"' + ")" * 400 + "].value",
        "emails[" + "(" * 400 + 'type eq "work"' + ")" * 400 + "].value",
        "emails[" + " or ".join(['type eq "work"'] * 400) + "].value",
        # Within the length limit, yet deeper than Python's recursion limit as a tree.
        "emails[" + " or ".join(["a pr"] * 500) + "].value",
    ],
)
async def test_a_patch_path_nested_or_chained_deeply_is_a_400(scim: httpx.AsyncClient, path: str) -> None:
    user = await create(scim)
    for operation in (
        {"op": "replace", "path": path, "value": "a@example.com"},
        {"op": "replace", "value": {path: "a@example.com"}},
    ):
        response = await scim.patch(
            f"/Users/{user['id']}", json={"schemas": [PATCH_OP], "Operations": [operation]}
        )
        assert_scim_error(response, 400, "invalidPath")
