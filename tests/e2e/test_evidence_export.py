"""Evidence bundles through the CLI (export, key, verify-bundle offline) and GET /audit/export; token labels in
histories and reviews."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.infrastructure.audit_signing_key import parse_private_key, public_key_text
from app.services import tenancy
from domain.errors import DomainError
from projections import audit, bundles
from tests.conftest import AUDIT_SIGNING_KEY, okta_user

# The fixture `history`, imported under its function's name.
from tests.e2e.evidence_story import (  # noqa: F401
    AUDIT,
    OKTA_LABEL,
    History,
    add_file,
    history_fixture,
    public_key_of,
    read_members,
    seal_everything,
    verify,
    write_members,
)
from tests.service import run_cli


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
    deployment_key = parse_private_key(AUDIT_SIGNING_KEY, "test")
    verdict = verify(response.content, deployment_key)
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
    assert verify(theirs.content, deployment_key).manifest.org_id == other.org_id
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
