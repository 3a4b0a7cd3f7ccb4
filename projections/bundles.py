"""Evidence bundles: what one holds, and how it is checked offline, with no database and no settings.

A bundle is one zip file, its members in this order (each one's bytes depend on its content alone: fixed
times, fixed order, so the same export is the same file):
- `head`: the organization's seal head when the bundle was exported, `POSITION:HEX` as `audit head` prints it.
- `events.jsonl`: every event of the organization from its first up to and including the event at the head,
  in log order, one JSON object per line: the event's stored columns and its seal from audit_seals (hex).
- `actors.json`: the label of each token among the events' actors, as the tokens table had it (a label is
  never changed after issue, see app/services/tenancy.actor_labels).
- `review.json`, `review.csv`: the access review of the window (projections/audit.AccessReplay), as
  `scimledger audit access --format json|csv` prints it, with the token labels of `actors.json`.
- `manifest.json`: the organization, the window, who exported it and when, the head, counts, the signing
  key's public half, and the SHA-256 of each member above.
- `signature`: a detached Ed25519 signature (64 raw bytes) over `manifest.json`'s bytes.

`verify_bundle` checks, in order, naming the first failure: the members are exactly these; the signature over
the manifest with the key the verifier brings; each member's SHA-256; the head; that recomputing the seal
chain (projections/seals.chain, the sealer's own function) from the genesis over the events gives each
event's stated seal and ends at the head; optionally that the chain passes through a head kept elsewhere; and
that the review is what the events imply, recomputed by the same replay `scimledger audit access` uses.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from eventstore.records import RecordedEvent
from projections.audit import REVIEW_COLUMNS, AccessReplay
from projections.seals import GENESIS, Head, chain

FORMAT = "scimledger-evidence-bundle/1"
HEAD, EVENTS, ACTORS, REVIEW_JSON, REVIEW_CSV = (
    "head",
    "events.jsonl",
    "actors.json",
    "review.json",
    "review.csv",
)
MANIFEST, SIGNATURE = "manifest.json", "signature"
# The members the manifest holds a SHA-256 of, in the zip's order; then the manifest and its signature.
HASHED = (HEAD, EVENTS, ACTORS, REVIEW_JSON, REVIEW_CSV)
MEMBERS = (*HASHED, MANIFEST, SIGNATURE)
# The review names no group, so the group prefix (a setting) plays no part in it.
_NO_PREFIX = ""
_encoder = msgspec.json.Encoder()


class BundledEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of `events.jsonl`: everything `seals.content` covers, and the seal the log holds for it."""

    position: int
    tx: int
    org_id: uuid.UUID
    stream_id: uuid.UUID
    version: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    occurred_at: datetime.datetime
    recorded_at: datetime.datetime
    actor: str
    request_id: str | None
    seal: str
    # The payload with its personal values decrypted (ERASED where the person's key is gone), where `payload`
    # holds encrypted ones: the chain covers `payload` as stored, while the review is recomputed from this.
    # Vouched for by the bundle's signature, not by the chain (ciphertext cannot be checked without the key).
    readable_payload: dict[str, Any] | None = None

    @classmethod
    def of(cls, event: RecordedEvent, seal: bytes, readable: RecordedEvent | None = None) -> BundledEvent:
        return cls(
            event.position,
            event.tx,
            event.org_id,
            event.stream_id,
            event.version,
            event.type,
            event.schema_version,
            event.payload,
            event.occurred_at,
            event.recorded_at,
            event.actor,
            event.request_id,
            seal.hex(),
            readable.payload if readable is not None and readable.payload is not event.payload else None,
        )

    def readable(self) -> RecordedEvent:
        """The event as readers of the log see it: personal values decrypted."""
        recorded = self.recorded()
        if self.readable_payload is None:
            return recorded
        return msgspec.structs.replace(recorded, payload=self.readable_payload)

    def recorded(self) -> RecordedEvent:
        return RecordedEvent(
            self.position,
            self.tx,
            self.org_id,
            self.stream_id,
            self.version,
            self.type,
            self.schema_version,
            self.payload,
            self.occurred_at,
            self.recorded_at,
            self.actor,
            self.request_id,
        )


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    org_id: uuid.UUID
    org_name: str
    start: datetime.datetime = msgspec.field(name="from")
    end: datetime.datetime = msgspec.field(name="to")
    exported_by: str
    exported_by_label: str | None
    exported_at: datetime.datetime
    head: str
    events: int
    review_rows: int
    signing_key: str  # base64 of the public key's raw bytes: which key signed it, to name in a failure
    sha256: dict[str, str]


_event_decoder = msgspec.json.Decoder(BundledEvent)
_manifest_decoder = msgspec.json.Decoder(Manifest)


def encode_event(event: RecordedEvent, seal: bytes, readable: RecordedEvent | None = None) -> bytes:
    return _encoder.encode(BundledEvent.of(event, seal, readable)) + b"\n"


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(_encoder.encode(manifest), indent=2) + b"\n"


def review_rows(replay: AccessReplay, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [interval.to_row(labels) for interval in replay.intervals()]


def review_json(rows: list[dict[str, Any]]) -> bytes:
    """As `scimledger audit access --format json` prints it."""
    if not rows:
        return b"[]\n"
    return b"[\n" + b",\n".join(_encoder.encode(row) for row in rows) + b"\n]\n"


def review_csv(rows: list[dict[str, Any]]) -> bytes:
    """As `scimledger audit access --format csv` prints it (the csv module's dialect: CRLF line ends)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(REVIEW_COLUMNS)
    for row in rows:
        writer.writerow("" if row[key] is None else row[key] for key in REVIEW_COLUMNS)
    return text.getvalue().encode()


def zip_info(name: str) -> zipfile.ZipInfo:
    """A member's header with nothing in it but its name: the same content makes the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


class BundleProblem(Exception):
    """The bundle failed verification; the message names what failed and what that means."""


@dataclass(frozen=True, slots=True)
class BundleVerdict:
    """What a valid bundle states, for the verifier to print."""

    manifest: Manifest
    head: Head


def _member_lines(archive: zipfile.ZipFile, name: str) -> Iterator[bytes]:
    with archive.open(name) as member:
        yield from member


def _sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as member:
        while chunk := member.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_members(archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    extra = sorted(set(names) - set(MEMBERS))
    if extra:
        raise BundleProblem(
            f"the bundle holds a file the manifest does not cover: {', '.join(extra)}. Nothing vouches for it."
        )
    missing = [name for name in MEMBERS if name not in names]
    if missing:
        raise BundleProblem(f"the bundle lacks {', '.join(missing)}.")
    if len(names) != len(set(names)):
        raise BundleProblem(
            "the bundle holds two files of the same name: which one was signed cannot be told."
        )


def _check_signature(archive: zipfile.ZipFile, key: Ed25519PublicKey, key_text: str) -> Manifest:
    manifest_bytes, signature = archive.read(MANIFEST), archive.read(SIGNATURE)
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        try:
            signer = _manifest_decoder.decode(manifest_bytes).signing_key
        except msgspec.DecodeError:
            signer = key_text
        other = f" The manifest names another signing key, {signer}." if signer != key_text else ""
        raise BundleProblem(
            "the signature does not verify with the key given: the manifest was altered after it was signed, "
            f"or the signature was, or another key signed it.{other}"
        ) from None
    try:
        return _manifest_decoder.decode(manifest_bytes)
    except msgspec.DecodeError as error:  # signed, yet not a manifest: a bundle of another format
        raise BundleProblem(f"the manifest is signed but not one this verifier reads: {error}") from error


def _check_hashes(archive: zipfile.ZipFile, manifest: Manifest) -> None:
    if manifest.format != FORMAT:
        raise BundleProblem(f"the bundle's format is '{manifest.format}'; this verifier reads '{FORMAT}'.")
    if sorted(manifest.sha256) != sorted(HASHED):
        raise BundleProblem(
            f"the manifest gives SHA-256 for {sorted(manifest.sha256)}, not for {list(HASHED)}."
        )
    for name in HASHED:
        if _sha256(archive, name) != manifest.sha256[name]:
            raise BundleProblem(
                f"{name} does not match its SHA-256 in the manifest: it was altered after the bundle was signed."
            )


def _check_head(archive: zipfile.ZipFile, manifest: Manifest) -> Head:
    text = archive.read(HEAD).decode(errors="replace").strip()
    if text != manifest.head:
        raise BundleProblem(f"the head member ({text}) is not the manifest's head ({manifest.head}).")
    try:
        return Head.parse(text)
    except ValueError as error:
        raise BundleProblem(f"the head: {error}") from error


def _describe(line: int, event: RecordedEvent) -> str:
    return f"{EVENTS} line {line} (event {event.position}, {event.type}, recorded {event.recorded_at.isoformat()})"


def _replayed(lines: Iterable[bytes], manifest: Manifest, head: Head, kept: Head | None) -> AccessReplay:
    """Recompute the chain over the events, checking each stated seal, and replay them for the review."""
    replay = AccessReplay(_NO_PREFIX, manifest.start, manifest.end)
    computed, count, last = GENESIS, 0, None
    kept_seen = kept is None
    for count, line in enumerate(lines, start=1):
        try:
            bundled = _event_decoder.decode(line)
        except msgspec.DecodeError as error:
            raise BundleProblem(f"{EVENTS} line {count} is not an event: {error}") from error
        event = bundled.recorded()
        if event.org_id != manifest.org_id:
            raise BundleProblem(f"{_describe(count, event)} belongs to another organization, {event.org_id}.")
        if last is not None and event.log_position <= last.log_position:
            raise BundleProblem(
                f"{_describe(count, event)} is out of log order: it comes after event {last.position}."
            )
        computed = chain(computed, event)
        if bundled.seal != computed.hex():
            raise BundleProblem(
                f"{_describe(count, event)} does not match its seal: the chain recomputed from the first event "
                "to it differs from the seal the log holds. It was edited, or an event before it was removed, "
                "added or moved."
            )
        if kept is not None and event.position == kept.position:
            if computed != kept.seal:
                raise BundleProblem(
                    f"the history up to {_describe(count, event)} does not lead to the head kept outside "
                    f"the service ({kept}): the log was rewritten since that head was taken."
                )
            kept_seen = True
        try:
            replay.apply(bundled.readable())
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise BundleProblem(f"{_describe(count, event)} cannot be replayed: {error!r}") from error
        last = event
    if last is None or last.position != head.position or computed != head.seal:
        ends = "no event" if last is None else f"event {last.position}"
        raise BundleProblem(
            f"the events end at {ends}, which is not the head ({head}): events were cut off the end, or the "
            "head is not the one this log was sealed to."
        )
    if count != manifest.events:
        raise BundleProblem(f"{EVENTS} holds {count} events; the manifest says {manifest.events}.")
    if not kept_seen:
        assert kept is not None
        raise BundleProblem(
            f"the events never reach position {kept.position} of the head kept outside the service ({kept}): it "
            "is not a head of this organization's log, or it was taken after this bundle's head."
        )
    return replay


def _first_difference(expected: list[Any], found: list[Any]) -> int:
    for index, (wanted, stated) in enumerate(zip(expected, found, strict=False)):
        if wanted != stated:
            return index
    return min(len(expected), len(found))


def _check_review(archive: zipfile.ZipFile, manifest: Manifest, replay: AccessReplay) -> None:
    try:
        labels = msgspec.json.decode(archive.read(ACTORS), type=dict[str, str])
    except msgspec.DecodeError as error:
        raise BundleProblem(f"{ACTORS} is not a map of actors to labels: {error}") from error
    rows = review_rows(replay, labels)
    try:
        stated = msgspec.json.decode(archive.read(REVIEW_JSON), type=list[dict[str, Any]])
    except msgspec.DecodeError as error:
        raise BundleProblem(f"{REVIEW_JSON} is not a list of rows: {error}") from error
    if stated != rows:
        row = _first_difference(rows, stated)
        raise BundleProblem(
            f"{REVIEW_JSON} row {row + 1} is not what the events imply for the window "
            f"{manifest.start.isoformat()} to {manifest.end.isoformat()}: recomputed "
            f"{rows[row] if row < len(rows) else 'no row'}, stated {stated[row] if row < len(stated) else 'no row'}."
        )
    expected_csv = review_csv(rows).decode().splitlines()
    stated_csv = archive.read(REVIEW_CSV).decode(errors="replace").splitlines()
    if stated_csv != expected_csv:
        line = _first_difference(expected_csv, stated_csv)
        raise BundleProblem(f"{REVIEW_CSV} line {line + 1} is not the review the events imply.")
    if len(rows) != manifest.review_rows:
        raise BundleProblem(f"the review has {len(rows)} rows; the manifest says {manifest.review_rows}.")


def verify_bundle(
    source: str | IO[bytes], key: Ed25519PublicKey, key_text: str, kept: Head | None = None
) -> BundleVerdict:
    """Check a bundle as the module's docstring says; raises BundleProblem naming the first failure.
    `key_text`: the key as given (base64 of its raw bytes), to tell a bundle signed by another key."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise BundleProblem(f"not a bundle: {error}") from error
    with archive:
        try:
            _check_members(archive)
            manifest = _check_signature(archive, key, key_text)
            _check_hashes(archive, manifest)
            head = _check_head(archive, manifest)
            replay = _replayed(_member_lines(archive, EVENTS), manifest, head, kept)
            _check_review(archive, manifest, replay)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:  # a member's compressed data is damaged
            raise BundleProblem(f"the zip is damaged: {error}") from error
    return BundleVerdict(manifest, head)
