"""Evidence bundles: an organization's access review for a window, the events it rests on with their seals,
the seal head, signed by the deployment's key, in one file (the format: projections/bundles.py).

One function for every edge: `scimledger audit export`, `GET /audit/export` and, later, the console.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import uuid
import zipfile
from dataclasses import dataclass
from typing import IO

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.services.tenancy import actor_labels
from domain.errors import DomainError, LogNotIntact, NotFound
from eventstore.personal_data import in_batches, readable
from eventstore.pool import Connection
from eventstore.records import EVENT_COLUMNS, RecordedEvent
from eventstore.store import ASSIGNED_TX
from projections import bundles
from projections.audit import AccessReplay
from projections.seals import GENESIS, Head, chain

_HEAD = "SELECT position, tx, seal FROM audit_seals WHERE org_id = $1 ORDER BY tx DESC, position DESC LIMIT 1"
# Events the runner has not sealed yet, recorded by the window's end: the bundle could not prove them.
_UNSEALED_BY = f"""
SELECT count(*) FROM events
WHERE org_id = $1 AND (tx, position) > ($2::xid8, $3::bigint) AND recorded_at <= $4 AND {ASSIGNED_TX}
"""
# Every event up to the head, with the seal the log holds for it (none: a seal deleted, or an event inserted).
_SEALED_EVENTS = f"""
SELECT {", ".join(f"e.{column.strip()}" for column in EVENT_COLUMNS.split(","))}, s.seal
FROM events AS e LEFT JOIN audit_seals AS s ON s.org_id = e.org_id AND s.position = e.position
WHERE e.org_id = $1 AND (e.tx, e.position) <= ($2::xid8, $3::bigint)
ORDER BY e.tx, e.position
"""


@dataclass(frozen=True, slots=True)
class BundleSummary:
    head: Head
    events: int
    review_rows: int


class _HashedMember:
    """A zip member being written, and the SHA-256 of what was written to it."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self._member = archive.open(bundles.zip_info(name), "w", force_zip64=True)
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._member.write(data)
        self._digest.update(data)

    def close(self) -> str:
        self._member.close()
        return self._digest.hexdigest()


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> str:
    member = _HashedMember(archive, name)
    member.write(data)
    return member.close()


def _not_intact(event: RecordedEvent, seal: bytes | None) -> LogNotIntact:
    what = (
        "has no seal, though it lies inside the sealed history" if seal is None else "does not match its seal"
    )
    return LogNotIntact(
        f"Event {event.position} ({event.type}, recorded {event.recorded_at.isoformat()}) {what}: the log fails "
        "its seal chain, so no evidence is signed over it. 'scimledger audit verify' names the break."
    )


async def build_bundle(
    connection: Connection,
    org_id: uuid.UUID,
    start: datetime.datetime,
    end: datetime.datetime,
    exported_by: str,
    signer: Ed25519PrivateKey,
    out: IO[bytes],
) -> BundleSummary:
    """Write the bundle of `org_id`'s review over [start, end] to `out` (a binary file, seekable or not),
    signed by `signer`; `exported_by` is the actor asking, as events name them. `connection` must be outside
    any transaction: everything is read in one repeatable-read snapshot of its own.

    The events are the organization's whole log up to its seal head, since a review replays from the first
    event and a grant open at the window's end ends when it was revoked, even after it. Events the runner
    has not sealed yet are left out, so the review is as the log stood at the head; one recorded by the
    window's end is refused, since the review would then miss it: the runner seals within seconds."""
    if start > end:
        raise DomainError(f"The window is reversed: {start.isoformat()} is after {end.isoformat()}.")
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        org_name = await connection.fetchval("SELECT name FROM orgs WHERE org_id = $1", org_id)
        if org_name is None:
            raise NotFound(f"No organization {org_id}.")
        latest = await connection.fetchrow(_HEAD, org_id)
        if latest is None:
            raise DomainError(f"'{org_name}' has no sealed events yet: there is nothing to export.")
        unsealed = await connection.fetchval(_UNSEALED_BY, org_id, latest["tx"], latest["position"], end)
        if unsealed:
            raise DomainError(
                f"{unsealed} event(s) of '{org_name}' recorded by the window's end are not sealed yet, so the "
                "bundle could not prove them. The runner seals within seconds: export again shortly (if it does "
                "not, 'scimledger projections status' tells why)."
            )
        exported_at: datetime.datetime = await connection.fetchval("SELECT now()")
        head = Head(latest["position"], bytes(latest["seal"]))
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            hashes = {bundles.HEAD: _write(archive, bundles.HEAD, f"{head}\n".encode())}
            replay = AccessReplay("", start, end)
            events_member = _HashedMember(archive, bundles.EVENTS)
            computed, count, actors = GENESIS, 0, {exported_by}
            try:
                sealed = connection.cursor(
                    _SEALED_EVENTS, org_id, latest["tx"], latest["position"], prefetch=2000
                )
                async for rows in in_batches(sealed, 2000):
                    stored = [RecordedEvent(*list(row.values())[:-1]) for row in rows]
                    # The chain over the payloads as stored; the review over what they say (decrypted).
                    for event, opened, row in zip(
                        stored, await readable(connection, stored), rows, strict=True
                    ):
                        seal = row["seal"]
                        computed = chain(computed, event)
                        if seal is None or bytes(seal) != computed:
                            raise _not_intact(event, seal)
                        replay.apply(opened)
                        actors.add(event.actor)
                        events_member.write(bundles.encode_event(event, computed, opened))
                        count += 1
            finally:  # the archive cannot be closed over an open member, not even to report a failure
                hashes[bundles.EVENTS] = events_member.close()
            if computed != head.seal:  # the head's own seal, read apart from the chain's
                raise LogNotIntact(f"The chain recomputed from the events does not end at the head ({head}).")
            labels = await actor_labels(connection, org_id, actors)
            rows = bundles.review_rows(replay, labels)
            hashes[bundles.ACTORS] = _write(
                archive, bundles.ACTORS, msgspec.json.encode(dict(sorted(labels.items())))
            )
            hashes[bundles.REVIEW_JSON] = _write(archive, bundles.REVIEW_JSON, bundles.review_json(rows))
            hashes[bundles.REVIEW_CSV] = _write(archive, bundles.REVIEW_CSV, bundles.review_csv(rows))
            public = signer.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            manifest = bundles.encode_manifest(
                bundles.Manifest(
                    format=bundles.FORMAT,
                    org_id=org_id,
                    org_name=org_name,
                    start=start,
                    end=end,
                    exported_by=exported_by,
                    exported_by_label=labels.get(exported_by),
                    exported_at=exported_at,
                    head=str(head),
                    events=count,
                    review_rows=len(rows),
                    signing_key=base64.b64encode(public).decode(),
                    sha256={name: hashes[name] for name in bundles.HASHED},
                )
            )
            _write(archive, bundles.MANIFEST, manifest)
            _write(archive, bundles.SIGNATURE, signer.sign(manifest))
    return BundleSummary(head, count, len(rows))
