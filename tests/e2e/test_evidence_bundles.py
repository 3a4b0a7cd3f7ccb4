"""Evidence bundles: exported from a history written through SCIM, verified offline, and every part of one
tampered with and caught, naming what failed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.services import tenancy
from domain.errors import DomainError, LogNotIntact
from projections import audit, bundles, seals
from tests.conftest import okta_user

# The fixtures `history` and `signer`, imported under their functions' names.
from tests.e2e.evidence_story import (  # noqa: F401
    OKTA_LABEL,
    History,
    add_file,
    export,
    history_fixture,
    read_members,
    seal_everything,
    signer_fixture,
    verify,
    write_members,
)
from tests.integration.forgery import as_superuser


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
    """The stored payload of ann's provisioning, which the chain covers: her personal values are encrypted
    there, so the edit is to what is not (active)."""
    lines = event_lines(contents)
    index = next(i for i, line in enumerate(lines) if b"ann@evidence.example" in line)
    event = msgspec.json.decode(lines[index])
    event["payload"]["active"] = not event["payload"]["active"]
    lines[index] = msgspec.json.encode(event) + b"\n"
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
    await as_superuser(pool, edit, position, payload.replace('"active": true', '"active": false'))
    try:
        with pytest.raises(
            LogNotIntact, match=rf"Event {position} \(UserProvisioned.*does not match its seal"
        ):
            await export(pool, late_window, signer)
    finally:
        await as_superuser(pool, edit, position, payload)
    assert verify(await export(pool, late_window, signer), signer).manifest.review_rows == 3
