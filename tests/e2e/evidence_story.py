"""The history evidence bundles are tested on: written through SCIM by a labelled Okta token, sealed as the
runner seals; and the helpers that export, open, rewrite and verify a bundle."""

from __future__ import annotations

import asyncio
import datetime
import io
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.infrastructure.audit_signing_key import parse_private_key, public_key_text
from app.services import evidence, tenancy
from app.services.catalog import PROJECT, ROLE
from app.services.container import Services
from eventstore.records import Metadata
from projections import bundles, seals
from tests.conftest import okta_user

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


@pytest.fixture(name="history")
async def history_fixture(http: httpx.AsyncClient, services: Services, pool: asyncpg.Pool) -> History:
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


@pytest.fixture(name="signer")
def signer_fixture() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def add_file(contents: dict[str, bytes]) -> dict[str, bytes]:
    return {**contents, "notes.txt": b"nothing to see"}


def public_key_of(private_text: str) -> str:
    return public_key_text(parse_private_key(private_text, "test").public_key())
