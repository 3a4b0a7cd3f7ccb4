"""Evidence bundles: exported from a history written through SCIM, verified offline, and every part of one
tampered with and caught, naming what failed. Through the service, the CLI and GET /audit/export."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import io
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.infrastructure.audit_signing_key import parse_private_key, public_key_text
from app.services import evidence, tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from domain.errors import DomainError, LogNotIntact
from eventstore.records import Metadata
from projections import audit, bundles, seals
from tests.conftest import AUDIT_SIGNING_KEY, okta_user
from tests.integration.forgery import as_superuser
from tests.service import run_cli

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ADMIN = Metadata("admin:auditee")
OKTA_LABEL = "Okta production"
AUDIT = "http://scim.test/audit"


@dataclass
class History:
    org: tenancy.Org
    scim: dict[str, str]
    scim_token_id: uuid.UUID
    auditor: dict[str, str]
    auditor_token_id: uuid.UUID
    start: datetime.datetime
    end: datetime.datetime
    early_head: seals.Head  # the head after the first events: one an auditor kept outside the service


def members(*user_ids: str, op: str = "add") -> dict[str, Any]:
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": op, "path": "members", "value": [{"value": user_id} for user_id in user_ids]}],
    }


async def seal_everything(pool: asyncpg.Pool, org_id: uuid.UUID) -> None:
    """What the runner's sealer does within a second: seal every event of the organization. The sealer reads
    below the oldest transaction running on the server (any database's), so another session's open transaction
    can hold it back a moment: it is asked again until it is through."""
    for _ in range(200):
        async with pool.acquire() as connection:
            await seals.seal_pending(connection)
            unsealed = await connection.fetchval(
                "SELECT count(*) FROM events AS e WHERE org_id = $1 AND NOT EXISTS "
                "(SELECT 1 FROM audit_seals AS s WHERE s.org_id = e.org_id AND s.position = e.position)",
                org_id,
            )
        if not unsealed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{unsealed} event(s) still unsealed: a transaction held the sealer back 10 s")


async def sealed_head(pool: asyncpg.Pool, org_id: uuid.UUID) -> seals.Head:
    await seal_everything(pool, org_id)
    async with pool.acquire() as connection:
        head = await seals.head(connection, org_id)
    assert head is not None
    return head


@pytest.fixture
async def history(http: httpx.AsyncClient, services: Services, pool: asyncpg.Pool) -> History:
    async with pool.acquire() as connection:
        org = await tenancy.create_org(connection, f"evidence-{uuid.uuid4().hex[:8]}")
        scim_token_id, scim_token = await tenancy.issue_token(connection, org.org_id, label=OKTA_LABEL)
        auditor_token_id, auditor_token = await tenancy.issue_token(
            connection, org.org_id, scope="auditor", label="External auditor"
        )
        start = await connection.fetchval("SELECT clock_timestamp()")
    scim = {"Authorization": f"Bearer {scim_token}"}
    await services.catalog.create(PROJECT, org.org_id, "Apollo", ADMIN)
    await services.catalog.create(ROLE, org.org_id, "Admin", ADMIN)
    await services.catalog.create(ROLE, org.org_id, "Viewer", ADMIN)
    ann = (await http.post("/Users", json=okta_user("ann@evidence.example"), headers=scim)).json()["id"]
    bob = (await http.post("/Users", json=okta_user("bob@evidence.example"), headers=scim)).json()["id"]
    early_head = await sealed_head(pool, org.org_id)
    groups = {
        group["displayName"]: group["id"]
        for group in (await http.get("/Groups", headers=scim)).json()["Resources"]
    }
    admin_group, viewer_group = groups["Statsig-Apollo-Admin"], groups["Statsig-Apollo-Viewer"]
    await http.patch(f"/Groups/{admin_group}", json=members(ann), headers=scim)
    await http.patch(f"/Groups/{viewer_group}", json=members(bob), headers=scim)
    remove_ann = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "remove", "path": f'members[value eq "{ann}"]'}],
    }
    await http.patch(f"/Groups/{admin_group}", json=remove_ann, headers=scim)
    await http.patch(f"/Groups/{admin_group}", json=members(bob), headers=scim)
    end = await pool.fetchval("SELECT clock_timestamp()")
    # After the window: bob loses the viewer role. The review still ends his interval there.
    remove_bob = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "remove", "path": f'members[value eq "{bob}"]'}],
    }
    await http.patch(f"/Groups/{viewer_group}", json=remove_bob, headers=scim)
    await seal_everything(pool, org.org_id)
    return History(
        org,
        scim,
        scim_token_id,
        {"Authorization": f"Bearer {auditor_token}"},
        auditor_token_id,
        start,
        end,
        early_head,
    )


async def export(pool: asyncpg.Pool, history: History, signer: Ed25519PrivateKey) -> bytes:
    out = io.BytesIO()
    async with pool.acquire() as connection:
        await evidence.build_bundle(
            connection, history.org.org_id, history.start, history.end, "admin:auditee", signer, out
        )
    return out.getvalue()


def read_members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(contents: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in contents.items():
            archive.writestr(bundles.zip_info(name), data)
    return out.getvalue()


def verify(bundle: bytes, signer: Ed25519PrivateKey, kept: seals.Head | None = None) -> bundles.BundleVerdict:
    public = signer.public_key()
    return bundles.verify_bundle(io.BytesIO(bundle), public, public_key_text(public), kept)


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


async def test_a_bundle_holds_the_review_the_whole_log_to_the_head_and_verifies(
    pool: asyncpg.Pool, history: History, signer: Ed25519PrivateKey
) -> None:
    bundle = await export(pool, history, signer)
    verdict = verify(bundle, signer)
    contents = read_members(bundle)
    assert list(contents) == list(bundles.MEMBERS)
    org_id = history.org.org_id
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        positions = [
            row[0]
            for row in await connection.fetch(
                "SELECT position FROM events WHERE org_id = $1 ORDER BY tx, position", org_id
            )
        ]
        intervals = await audit.access(connection, org_id, "Statsig", history.start, history.end)
        labels = await tenancy.actor_labels(connection, org_id, audit.actors_of(intervals))
        head = await seals.head(connection, org_id)
    lines = [msgspec.json.decode(line) for line in contents[bundles.EVENTS].splitlines()]
    assert [line["position"] for line in lines] == positions  # every event, after the window's end too
    assert verdict.head == head
    assert contents[bundles.HEAD].decode().strip() == str(head)
    assert lines[-1]["seal"] == head.seal.hex()
    # The review is what `audit access` answers, token labels beside the ids.
    review = msgspec.json.decode(contents[bundles.REVIEW_JSON])
    assert review == [interval.to_row(labels) for interval in intervals]
    okta = f"token:{history.scim_token_id}"
    assert [
        (row["userName"], row["role"], row["granted_by"], row["granted_by_label"], row["to"] is None)
        for row in review
    ] == [
        ("ann@evidence.example", "Admin", okta, OKTA_LABEL, False),
        ("bob@evidence.example", "Viewer", okta, OKTA_LABEL, False),  # revoked after the window
        ("bob@evidence.example", "Admin", okta, OKTA_LABEL, True),
    ]
    csv_lines = contents[bundles.REVIEW_CSV].decode().splitlines()
    assert csv_lines[0] == ",".join(audit.REVIEW_COLUMNS)
    assert f",{okta},{OKTA_LABEL},push," in csv_lines[1]
    manifest = verdict.manifest
    assert (manifest.org_id, manifest.start, manifest.end) == (org_id, history.start, history.end)
    assert (manifest.exported_by, manifest.events, manifest.review_rows) == ("admin:auditee", len(lines), 3)
    assert manifest.sha256[bundles.EVENTS] == hashlib.sha256(contents[bundles.EVENTS]).hexdigest()
    # A head kept outside the service earlier: the bundle's chain passes through it.
    assert verify(bundle, signer, kept=history.early_head).head == head


def resign(contents: dict[str, bytes], signer: Ed25519PrivateKey, **changes: Any) -> dict[str, bytes]:
    """What only the holder of the key could do: rehash every member into the manifest and sign it again."""
    manifest = msgspec.json.decode(contents[bundles.MANIFEST])
    manifest.update(changes)
    manifest["sha256"] = {name: hashlib.sha256(contents[name]).hexdigest() for name in bundles.HASHED}
    encoded = msgspec.json.encode(manifest)
    return {**contents, bundles.MANIFEST: encoded, bundles.SIGNATURE: signer.sign(encoded)}


def event_lines(contents: dict[str, bytes]) -> list[bytes]:
    return contents[bundles.EVENTS].splitlines(keepends=True)


def with_lines(contents: dict[str, bytes], lines: list[bytes]) -> dict[str, bytes]:
    return {**contents, bundles.EVENTS: b"".join(lines)}


def edit_payload(contents: dict[str, bytes]) -> dict[str, bytes]:
    lines = event_lines(contents)
    index = next(i for i, line in enumerate(lines) if b"ann@evidence.example" in line)
    lines[index] = lines[index].replace(b"ann@evidence.example", b"eve@evidence.example")
    return with_lines(contents, lines)


def drop_event(contents: dict[str, bytes]) -> dict[str, bytes]:
    lines = event_lines(contents)
    return with_lines(contents, lines[:2] + lines[3:])


def reorder_events(contents: dict[str, bytes]) -> dict[str, bytes]:
    lines = event_lines(contents)
    lines[3], lines[4] = lines[4], lines[3]
    return with_lines(contents, lines)


def cut_the_end(contents: dict[str, bytes]) -> dict[str, bytes]:
    return with_lines(contents, event_lines(contents)[:-1])


def edit_review_row(contents: dict[str, bytes]) -> dict[str, bytes]:
    rows = msgspec.json.decode(contents[bundles.REVIEW_JSON])
    rows[0]["to"] = None  # ann never lost the admin role
    return {**contents, bundles.REVIEW_JSON: bundles.review_json(rows)}


def flip_signature_byte(contents: dict[str, bytes]) -> dict[str, bytes]:
    signature = bytearray(contents[bundles.SIGNATURE])
    signature[10] ^= 0x01
    return {**contents, bundles.SIGNATURE: bytes(signature)}


def widen_window(contents: dict[str, bytes]) -> dict[str, bytes]:
    manifest = msgspec.json.decode(contents[bundles.MANIFEST])
    manifest["from"] = "2000-01-01T00:00:00+00:00"
    return {
        **contents,
        bundles.MANIFEST: bundles.encode_manifest(msgspec.convert(manifest, bundles.Manifest)),
    }


def add_file(contents: dict[str, bytes]) -> dict[str, bytes]:
    return {**contents, "notes.txt": b"nothing to see"}


OTHER_SEAL = "ab" * 32

# (tampering, re-signed by the key's holder afterwards, what the verifier must say)
TAMPERING: dict[str, tuple[Callable[[dict[str, bytes]], dict[str, bytes]], bool, str]] = {
    "a byte of the signature": (
        flip_signature_byte,
        False,
        "the signature does not verify with the key given",
    ),
    "the manifest's window": (widen_window, False, "the signature does not verify with the key given"),
    "a file added": (add_file, False, "holds a file the manifest does not cover: notes.txt"),
    "an event's payload": (edit_payload, False, "events.jsonl does not match its SHA-256 in the manifest"),
    "an event's payload, re-signed": (edit_payload, True, "UserProvisioned"),
    "an event dropped, re-signed": (drop_event, True, "line 3 (event"),
    "two events reordered, re-signed": (reorder_events, True, "line 4 (event"),
    "the last event cut off, re-signed": (cut_the_end, True, "which is not the head"),
    "a review row": (edit_review_row, False, "review.json does not match its SHA-256 in the manifest"),
    "a review row, re-signed": (edit_review_row, True, "review.json row 1 is not what the events imply"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
async def test_every_part_tampered_with_is_caught_and_named(
    pool: asyncpg.Pool, history: History, signer: Ed25519PrivateKey, tampering: str
) -> None:
    tamper, resigned, message = TAMPERING[tampering]
    contents = tamper(read_members(await export(pool, history, signer)))
    if resigned:
        contents = resign(contents, signer)
    with pytest.raises(bundles.BundleProblem) as caught:
        verify(write_members(contents), signer)
    assert message in str(caught.value)
    if "event" in tampering and resigned and "cut off" not in tampering:
        assert "does not match its seal" in str(caught.value)


async def test_a_changed_head_is_caught_whether_or_not_it_is_signed_again(
    pool: asyncpg.Pool, history: History, signer: Ed25519PrivateKey
) -> None:
    contents = read_members(await export(pool, history, signer))
    position = contents[bundles.HEAD].decode().split(":")[0]
    changed = {**contents, bundles.HEAD: f"{position}:{OTHER_SEAL}\n".encode()}
    with pytest.raises(bundles.BundleProblem, match="head does not match its SHA-256 in the manifest"):
        verify(write_members(changed), signer)
    resigned = resign(changed, signer, head=f"{position}:{OTHER_SEAL}")
    with pytest.raises(bundles.BundleProblem, match="which is not the head"):
        verify(write_members(resigned), signer)


async def test_another_key_and_a_head_kept_from_another_chain_are_refused(
    pool: asyncpg.Pool, history: History, signer: Ed25519PrivateKey
) -> None:
    bundle = await export(pool, history, signer)
    with pytest.raises(bundles.BundleProblem, match="names another signing key"):
        verify(bundle, Ed25519PrivateKey.generate())
    forged_head = seals.Head(history.early_head.position, bytes(32))
    with pytest.raises(bundles.BundleProblem, match="does not lead to the head kept outside"):
        verify(bundle, signer, kept=forged_head)
    with pytest.raises(bundles.BundleProblem, match="never reach position"):
        verify(bundle, signer, kept=seals.Head(10**15, bytes(32)))
    with pytest.raises(bundles.BundleProblem, match="not a bundle"):
        verify(b"not a zip", signer)


async def test_an_export_is_refused_over_a_log_whose_chain_is_broken_or_unsealed_in_the_window(
    http: httpx.AsyncClient, pool: asyncpg.Pool, history: History, signer: Ed25519PrivateKey
) -> None:
    await http.post("/Users", json=okta_user("late@evidence.example"), headers=history.scim)
    late_window = History(**{**history.__dict__, "end": await pool.fetchval("SELECT clock_timestamp()")})
    with pytest.raises(DomainError, match="not sealed yet"):
        await export(pool, late_window, signer)
    await seal_everything(pool, history.org.org_id)
    assert verify(await export(pool, late_window, signer), signer).manifest.review_rows == 3
    # A superuser edits a sealed event behind the service's back: nothing is signed over that log.
    position, payload = await pool.fetchrow(
        "SELECT position, payload::text FROM events WHERE org_id = $1 AND type = 'UserProvisioned' "
        "ORDER BY position LIMIT 1",
        history.org.org_id,
    )
    edit = "UPDATE events SET payload = $2::text::jsonb WHERE position = $1"
    await as_superuser(pool, edit, position, payload.replace("ann@evidence.example", "eve@evidence.example"))
    try:
        with pytest.raises(
            LogNotIntact, match=rf"Event {position} \(UserProvisioned.*does not match its seal"
        ):
            await export(pool, late_window, signer)
    finally:
        await as_superuser(pool, edit, position, payload)
    assert verify(await export(pool, late_window, signer), signer).manifest.review_rows == 3


def public_key_of(private_text: str) -> str:
    return public_key_text(parse_private_key(private_text, "test").public_key())


async def test_the_cli_exports_prints_the_key_and_verifies_offline(
    history: History, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "SCIMLEDGER_AUDIT_SIGNING_KEY": AUDIT_SIGNING_KEY}
    window = ["--from", history.start.isoformat(), "--to", history.end.isoformat()]
    out = tmp_path / "bundle.zip"
    refused = run_cli(
        cli_env, "audit", "export", "--org", history.org.name, *window, "--out", str(out), check=False
    )
    assert refused.returncode == 1
    assert "SCIMLEDGER_AUDIT_SIGNING_KEY" in refused.stderr
    assert not out.exists()
    exported = run_cli(env, "audit", "export", "--org", history.org.name, *window, "--out", str(out))
    assert "3 review row(s)" in exported.stdout
    key = run_cli(env, "audit", "key").stdout.strip()
    assert key == public_key_of(AUDIT_SIGNING_KEY)
    # Offline: no database, no settings.
    offline = {
        name: value
        for name, value in env.items()
        if name not in ("DATABASE_URL", "SCIMLEDGER_AUDIT_SIGNING_KEY")
    }
    valid = run_cli(offline, "audit", "verify-bundle", str(out), "--key", key)
    assert "valid" in valid.stdout
    assert history.org.name in valid.stdout
    pem = tmp_path / "key.pem"
    pem.write_text(run_cli(env, "audit", "key", "--pem").stdout)
    assert run_cli(
        offline, "audit", "verify-bundle", str(out), "--key", str(pem), "--head", str(history.early_head)
    )
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(write_members(add_file(read_members(out.read_bytes()))))
    caught = run_cli(offline, "audit", "verify-bundle", str(tampered), "--key", key, check=False)
    assert caught.returncode == 3
    assert "NOT VALID" in caught.stderr
    assert "notes.txt" in caught.stderr
    other_key = public_key_text(Ed25519PrivateKey.generate().public_key())
    wrong = run_cli(offline, "audit", "verify-bundle", str(out), "--key", other_key, check=False)
    assert (wrong.returncode, "signature does not verify" in wrong.stderr) == (3, True)
    bad_key = run_cli(offline, "audit", "verify-bundle", str(out), "--key", "not a key", check=False)
    assert bad_key.returncode == 2
    # Names beside token ids in the CLI's history and review too.
    lines = run_cli(
        env, "audit", "history", "--org", history.org.name, "--format", "jsonl"
    ).stdout.splitlines()
    assert {msgspec.json.decode(line)["actor_label"] for line in lines} == {OKTA_LABEL, None}
    review = run_cli(env, "audit", "access", "--org", history.org.name, *window, "--format", "csv").stdout
    assert review.splitlines()[0] == ",".join(audit.REVIEW_COLUMNS)
    assert OKTA_LABEL in review


async def test_get_audit_export_streams_the_auditors_own_organizations_bundle(
    http: httpx.AsyncClient, pool: asyncpg.Pool, history: History
) -> None:
    window = {"from": history.start.isoformat(), "to": history.end.isoformat()}
    response = await http.get(f"{AUDIT}/export", params=window, headers=history.auditor)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="evidence-')
    signer = parse_private_key(AUDIT_SIGNING_KEY, "test")
    verdict = verify(response.content, signer)
    assert verdict.manifest.exported_by == f"token:{history.auditor_token_id}"
    assert verdict.manifest.exported_by_label == "External auditor"
    assert (await http.get(f"{AUDIT}/export", params=window, headers=history.scim)).status_code == 403
    assert (
        await http.get(f"{AUDIT}/export", params={"to": window["to"]}, headers=history.auditor)
    ).status_code == 400
    # Another organization's auditor gets its own organization's bundle, whatever it asks: there is no way to
    # name another organization.
    async with pool.acquire() as connection:
        other = await tenancy.create_org(connection, f"other-{uuid.uuid4().hex[:6]}")
        _, other_scim = await tenancy.issue_token(connection, other.org_id)
        _, other_auditor = await tenancy.issue_token(connection, other.org_id, scope="auditor")
    others = {"Authorization": f"Bearer {other_auditor}"}
    empty = await http.get(f"{AUDIT}/export", params=window, headers=others)
    assert (empty.status_code, "no sealed events" in empty.json()["detail"]) == (400, True)
    await http.post(
        "/Users", json=okta_user("own@other.example"), headers={"Authorization": f"Bearer {other_scim}"}
    )
    await seal_everything(pool, other.org_id)
    now = await pool.fetchval("SELECT clock_timestamp()")
    theirs = await http.get(f"{AUDIT}/export", params={**window, "to": now.isoformat()}, headers=others)
    contents = read_members(theirs.content)
    assert verify(theirs.content, signer).manifest.org_id == other.org_id
    assert str(history.org.org_id) not in contents[bundles.EVENTS].decode()
    assert b"evidence.example" not in contents[bundles.EVENTS]


async def test_audit_history_and_access_name_tokens_by_their_labels(
    http: httpx.AsyncClient, history: History
) -> None:
    events = (await http.get(f"{AUDIT}/history", headers=history.auditor)).json()["events"]
    okta = f"token:{history.scim_token_id}"
    assert {(event["actor"], event["actor_label"]) for event in events} == {
        (okta, OKTA_LABEL),
        ("admin:auditee", None),
    }
    params = {"from": history.start.isoformat(), "to": history.end.isoformat()}
    intervals = (await http.get(f"{AUDIT}/access", params=params, headers=history.auditor)).json()[
        "intervals"
    ]
    assert {row["granted_by_label"] for row in intervals} == {OKTA_LABEL}
    assert {row["revoked_by_label"] for row in intervals} == {OKTA_LABEL, None}


def test_a_signing_key_is_read_as_pem_or_base64_and_a_bad_one_is_named() -> None:
    key = parse_private_key(AUDIT_SIGNING_KEY, "test")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assert public_key_text(parse_private_key(pem, "pem").public_key()) == public_key_of(AUDIT_SIGNING_KEY)
    with pytest.raises(DomainError, match="decodes to 3 bytes"):
        parse_private_key(base64.b64encode(b"abc").decode(), "SCIMLEDGER_AUDIT_SIGNING_KEY")
