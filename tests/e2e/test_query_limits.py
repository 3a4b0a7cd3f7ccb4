"""What one request may cost the database: a bound on filters, and a statement timeout reported as what it is."""

from __future__ import annotations

import httpx

# The filter of the report: 143 value filters with `co`, within the 4,096 characters a filter may have.
REPORTED_FILTER = " or ".join(f'emails[value co "x{index:03}"]' for index in range(143))


def any_of(count: int, operator: str = "eq") -> str:
    return " or ".join(f'emails[value {operator} "u{index}@x.example"]' for index in range(count))


async def test_the_reported_filter_is_refused_with_a_detail_naming_the_count_and_the_limit(
    scim: httpx.AsyncClient,
) -> None:
    assert len(REPORTED_FILTER) <= 4096
    response = await scim.get("/Users", params={"filter": REPORTED_FILTER})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["scimType"] == "invalidFilter"
    assert "143 comparisons" in body["detail"]
    assert "at most 20" in body["detail"]
    assert "SCIMLEDGER_MAX_FILTER_TERMS" in body["detail"]


async def test_a_filter_with_more_comparisons_than_the_limit_is_refused_on_groups_too(
    scim: httpx.AsyncClient,
) -> None:
    within = " or ".join(f'displayName eq "g{index}"' for index in range(20))
    assert (await scim.get("/Groups", params={"filter": within})).status_code == 200
    response = await scim.get("/Groups", params={"filter": f'{within} or displayName eq "g20"'})
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidFilter"
    assert "21 comparisons" in response.json()["detail"]


async def test_substring_comparisons_have_a_lower_limit_than_the_others(scim: httpx.AsyncClient) -> None:
    assert (await scim.get("/Users", params={"filter": any_of(20)})).status_code == 200
    assert (await scim.get("/Users", params={"filter": any_of(5, "co")})).status_code == 200
    mixed = f'{any_of(3, "co")} or {any_of(3, "ew")} or userName eq "a"'
    response = await scim.get("/Users", params={"filter": mixed})
    assert response.status_code == 400
    body = response.json()
    assert body["scimType"] == "invalidFilter"
    assert "6 'co' or 'ew' comparisons" in body["detail"]
    assert "at most 5" in body["detail"]
    assert "SCIMLEDGER_MAX_FILTER_SUBSTRING_TERMS" in body["detail"]
