"""The audit section's access review: the same intervals /audit/access answers for the window, and exports
stamped with the seal head read with the rows, who exported them and when."""

from __future__ import annotations

import csv
import datetime
import html
import io
import json

import asyncpg
import httpx
import pytest

from app.infrastructure.audit_signing_key import parse_private_key
from projections import seals
from tests.conftest import AUDIT_SIGNING_KEY, okta_user
from tests.console.audit_story import Story, members, okta_history, readable, table_rows
from tests.console.helpers import console_org, sign_in
from tests.e2e.evidence_story import verify


@pytest.fixture
async def story(browser_like: httpx.AsyncClient, pool: asyncpg.Pool) -> Story:
    org = await console_org(pool)
    told = await okta_history(browser_like, pool, org)
    async with pool.acquire() as connection:
        await seals.seal_pending(connection)  # as the runner does: the exports then carry a head
    await sign_in(browser_like, org, "audit", label="Dana")
    return told


def window(story: Story) -> dict[str, str]:
    return {"from": story.start.isoformat(), "to": story.end.isoformat()}


async def head_of(pool: asyncpg.Pool, story: Story) -> str:
    async with pool.acquire() as connection:
        head = await seals.head(connection, story.org.tenant.org.org_id)
    assert head is not None
    return str(head)


async def test_the_review_is_what_the_audit_api_answers_for_the_window(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    for params in (window(story), {**window(story), "role": "admin"}, {**window(story), "user": story.bob}):
        api = await browser_like.get("/audit/access", params=params, headers=story.auditor)
        assert api.status_code == 200
        exported = await browser_like.get("/console/audit/review.json", params=params)
        assert exported.status_code == 200
        assert exported.json()["intervals"] == api.json()["intervals"]
        page = await browser_like.get("/console/audit/review", params=params)
        assert page.status_code == 200
        rows = table_rows(page.text)
        assert len(rows) == len(api.json()["intervals"]) > 0
        for row, interval in zip(rows, api.json()["intervals"], strict=True):
            assert row.startswith(f"{interval['userName']} {interval['project']} {interval['role']}")
    closed = [row for row in table_rows(page.text) if "still held" not in row]
    assert closed == []  # bob's grants are both still held


async def test_without_a_window_the_review_covers_the_last_90_days(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    page = await browser_like.get("/console/audit/review")
    assert page.status_code == 200
    assert len(table_rows(page.text)) == 4
    before = {"from": "2020-01-01T00:00", "to": "2020-02-01T00:00"}
    assert table_rows((await browser_like.get("/console/audit/review", params=before)).text) == [
        "Nobody held access in this window."
    ]


async def test_the_json_export_is_stamped_with_the_head_the_exporter_and_the_time(
    browser_like: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    before = datetime.datetime.now(datetime.UTC)
    exported = await browser_like.get("/console/audit/review.json", params=window(story))
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].startswith('attachment; filename="access-review-')
    assert exported.headers["content-disposition"].endswith('.json"')
    body = json.loads(exported.content)
    assert body["seal_head"] == await head_of(pool, story)
    assert body["exported_by"] == "console:Dana"
    assert (
        before <= datetime.datetime.fromisoformat(body["exported_at"]) <= datetime.datetime.now(datetime.UTC)
    )
    assert body["organization"]["id"] == story.org.org_id
    assert body["from"] == story.start.isoformat()
    assert [interval["user_id"] for interval in body["intervals"]] == [
        story.ann,
        story.eve,
        story.bob,
        story.bob,
    ]


def stamp_and_body(text: str) -> tuple[list[str], str]:
    """The export's stamp (its leading rows of one cell that begins with "# ") and the CSV after it."""
    rows = list(csv.reader(io.StringIO(text)))
    count = next(index for index, row in enumerate(rows) if not (len(row) == 1 and row[0].startswith("# ")))
    out = io.StringIO()
    csv.writer(out).writerows(rows[count:])
    return [row[0] for row in rows[:count]], out.getvalue()


async def test_a_filter_or_a_name_with_a_comma_cannot_put_a_formula_in_the_stamp(
    browser_like: httpx.AsyncClient, story: Story
) -> None:
    exported = await browser_like.get(
        "/console/audit/review.csv", params={**window(story), "project": 'x,=HYPERLINK("http://evil")'}
    )
    assert exported.status_code == 200
    for row in csv.reader(io.StringIO(exported.text)):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row


async def test_the_csv_export_starts_with_its_stamp_then_a_row_per_interval(
    browser_like: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    exported = await browser_like.get("/console/audit/review.csv", params=window(story))
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"].endswith('.csv"')
    stamp, body = stamp_and_body(exported.text)
    assert f"# seal head: {await head_of(pool, story)}" in stamp
    assert "# exported by: console:Dana" in stamp
    assert any(line.startswith("# exported at: ") for line in stamp)
    rows = list(csv.DictReader(io.StringIO(body)))
    api = (await browser_like.get("/audit/access", params=window(story), headers=story.auditor)).json()
    assert [(row["user_id"], row["group_id"], row["from"], row["to"] or None) for row in rows] == [
        (interval["user_id"], interval["group_id"], interval["from"], interval["to"])
        for interval in api["intervals"]
    ]


@pytest.mark.parametrize(
    "path", ["/console/audit/review", "/console/audit/review.csv", "/console/audit/review.json"]
)
@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2026-13-01T00:00"}, "is not an ISO 8601"),
        ({"from": "2026-11-02T10:00", "to": "2026-11-01T10:00"}, "the window is reversed"),
        ({"user": "a\x00b"}, "is not a name or an id"),
    ],
)
async def test_a_review_of_a_bad_window_is_a_400_page(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, path: str, params: dict[str, str], words: str
) -> None:
    await sign_in(browser_like, await console_org(pool), "audit")
    page = await browser_like.get(path, params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert words in html.unescape(page.text)


async def test_a_csv_cell_a_spreadsheet_would_run_is_written_after_an_apostrophe(
    browser_like: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    scim = story.org.tenant.headers
    formula = '=HYPERLINK("http://evil.example","x")@audit.example'
    created = await browser_like.post("/scim/v2/Users", json=okta_user(formula), headers=scim)
    assert created.status_code == 201
    added = await browser_like.patch(
        f"/scim/v2/Groups/{story.viewer_group}", json=members(created.json()["id"]), headers=scim
    )
    assert added.is_success
    await readable(pool, story.org)
    exported = await browser_like.get("/console/audit/review.csv", params={"user": created.json()["id"]})
    [row] = list(csv.DictReader(io.StringIO(stamp_and_body(exported.text)[1])))
    assert row["userName"] == "'" + formula
    as_json = await browser_like.get("/console/audit/review.json", params={"user": created.json()["id"]})
    assert as_json.json()["intervals"][0]["userName"] == formula  # JSON is data, not a spreadsheet


async def test_the_evidence_bundle_of_the_window_verifies_offline_and_names_the_console_user(
    browser_like: httpx.AsyncClient, story: Story, pool: asyncpg.Pool
) -> None:
    downloaded = await browser_like.get("/console/audit/review.zip", params=window(story))
    assert downloaded.status_code == 200
    assert downloaded.headers["content-disposition"].endswith('.zip"')
    signer = parse_private_key(AUDIT_SIGNING_KEY, "the tests' key")
    verdict = verify(downloaded.content, signer)
    assert verdict.manifest.exported_by == "console:Dana"
    assert str(verdict.head) == await head_of(pool, story)
