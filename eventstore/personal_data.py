"""Personal data in the log, encrypted with a key per person (crypto-shredding).

The contract the rest of the service relies on:
- a user's personal attributes are stored in their events encrypted with that user's data key, a row of
  `personal_data_keys` (migration 0026);
- erasing the user deletes that row (`destroy_data_key`), in the transaction that records the erasure;
- from then on, reading those events shows ERASED in place of each attribute whose key is gone.

The cipher: each data key is a 256-bit AES-GCM key, stored wrapped (a Fernet token) by the key-encryption key
(KEK) from the settings. A personal value is stored as `{"$erasable": base64(nonce | ciphertext)}` in place of
the value, the ciphertext being that of the value's JSON; the associated data binds the organization, the user
and the value's path in the payload, so a ciphertext moved to another user, attribute or event type does not
decrypt. Domain events stay plaintext in memory: the store encrypts while encoding an append and every reader
of the log decrypts through `readable` (or, for the store's own reads, `open_records` with the keys its read
statement fetched). The sealer is the exception, on purpose: seals cover what is stored, the ciphertext, so
they still verify once a key is gone.

Events written before encryption hold plaintext, and read as they are: only `{"$erasable": …}` values are
decrypted, so no upcast is needed and nothing rewrites history.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.fernet import InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.utils import get_topic

from eventstore.records import PayloadSeal, RecordedEvent, StreamAppend

if TYPE_CHECKING:  # the pool module builds on this one
    from eventstore.pool import Connection

# What every reader shows in place of a personal value whose key has been destroyed.
ERASED = "[erased]"

# The marker of an encrypted value in a stored payload: the value's only key.
ERASABLE = "$erasable"

_DESTROY = "DELETE FROM personal_data_keys WHERE org_id = $1 AND user_id = $2 RETURNING user_id"

# The keys of the users in a batch of records, in one query whatever the batch's size.
_KEYS = """
SELECT k.org_id, k.user_id, k.wrapped_key
FROM personal_data_keys AS k
JOIN unnest($1::uuid[], $2::uuid[]) AS wanted(org_id, user_id)
  ON k.org_id = wanted.org_id AND k.user_id = wanted.user_id
"""
# The attributes an organization's declared extensions mark as personal (scim/declaration.py's `personal`).
_CUSTOM_PERSONAL = """
SELECT lower(s.urn), lower(attribute->>'name')
FROM org_schemas AS s, jsonb_array_elements(s.declaration->'attributes') AS attribute
WHERE s.org_id = $1 AND lower(s.urn) = ANY($2::text[]) AND (attribute->>'personal')::boolean IS TRUE
"""

_NONCE_BYTES = 12
# Data keys unwrapped in this process, by their wrapped bytes (a Fernet token): unwrapping costs tens of
# microseconds a row. The cache never decides whether a key exists: every batch asks the table first, so an
# erasure takes effect at once in every process; a wrapped key that no longer exists is simply never asked for.
_UNWRAPPED_KEPT = 100_000

UserKey = tuple[uuid.UUID, uuid.UUID]  # (org_id, user_id)
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


class PersonalFields(msgspec.Struct, frozen=True):
    """Which values of which events are personal: the domain's facts, handed to the cipher where it is built.

    `profiles`: event type name -> the payload field that holds profile attributes (SCIM's shape);
    `core`: top-level attribute names, lower-cased; `extensions`: built-in extension URN (lower-cased) -> its
    personal attribute names. An organization's own extensions mark theirs in their declaration."""

    profiles: Mapping[str, str]
    core: frozenset[str]
    extensions: Mapping[str, frozenset[str]]


def _aad(org_id: uuid.UUID, user_id: uuid.UUID, path: str) -> bytes:
    return f"{org_id}/{user_id}/{path}".encode()


class PersonalDataCipher:
    """Seals and opens personal values with data keys wrapped by a KEK (`MultiFernet`: the first key wraps,
    every one unwraps). `kek` is called on first use, so that a process that never meets personal data never
    needs the KEK; `missing` is the error for a data key that none of the KEKs unwraps, which `kek` raises too
    when there is no KEK at all: the process's configuration is at fault, never the event being read."""

    def __init__(
        self, kek: Callable[[], MultiFernet], fields: PersonalFields, missing: type[Exception]
    ) -> None:
        self._kek_source = kek
        self.missing = missing
        self._kek: MultiFernet | None = None
        self.fields = fields
        self._unwrapped: dict[bytes, AESGCM] = {}

    def kek(self) -> MultiFernet:
        if self._kek is None:
            self._kek = self._kek_source()
        return self._kek

    def new_key(self) -> tuple[AESGCM, bytes]:
        """A fresh data key, and its wrapping to store."""
        raw = AESGCM.generate_key(bit_length=256)
        wrapped = self.kek().encrypt(raw)
        key = AESGCM(raw)
        self._remember(wrapped, key)
        return key, wrapped

    def unwrap(self, wrapped: bytes) -> AESGCM:
        key = self._unwrapped.get(wrapped)
        if key is None:
            try:
                key = AESGCM(self.kek().decrypt(wrapped))
            except InvalidToken as error:  # no configured KEK wrapped it
                raise self.missing(
                    "A personal data key cannot be unwrapped with SCIMLEDGER_PERSONAL_DATA_KEYS: the key that "
                    "wrapped it is no longer among the configured keys. Put it back (after the current one) "
                    "and run 'scimledger personal-data rewrap'."
                ) from error
            self._remember(wrapped, key)
        return key

    def _remember(self, wrapped: bytes, key: AESGCM) -> None:
        if len(self._unwrapped) >= _UNWRAPPED_KEPT:
            self._unwrapped.clear()
        self._unwrapped[wrapped] = key

    # Writing.

    def seal_payload(
        self,
        type_name: str,
        payload: dict[str, Any],
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        key: AESGCM,
        custom: Mapping[str, frozenset[str]],
    ) -> dict[str, Any]:
        """`payload` with its personal values encrypted; `custom`: the organization's personal extension
        attributes, by lower-cased URN."""
        field = self.fields.profiles.get(type_name)
        if field is None or not isinstance(attributes := payload.get(field), dict):
            return payload
        sealed: dict[str, Any] = {}
        for name, value in attributes.items():
            path = f"{field}/{name}"
            lowered = name.lower()
            extension = self.fields.extensions.get(lowered) or custom.get(lowered)
            if lowered in self.fields.core:
                sealed[name] = self._seal(value, org_id, user_id, path, key)
            elif extension is not None and isinstance(value, dict):
                sealed[name] = {
                    sub: self._seal(sub_value, org_id, user_id, f"{path}/{sub}", key)
                    if sub.lower() in extension
                    else sub_value
                    for sub, sub_value in value.items()
                }
            else:
                sealed[name] = value
        return {**payload, field: sealed}

    def _seal(self, value: Any, org_id: uuid.UUID, user_id: uuid.UUID, path: str, key: AESGCM) -> Any:
        if value is None:
            return None
        nonce = os.urandom(_NONCE_BYTES)
        sealed = key.encrypt(nonce, _json_encoder.encode(value), _aad(org_id, user_id, path))
        return {ERASABLE: base64.b64encode(nonce + sealed).decode()}

    def custom_urns(self, type_name: str, payload: Mapping[str, Any]) -> set[str]:
        """The lower-cased extension URNs of `payload`'s profile that are not built in: the organization's."""
        field = self.fields.profiles.get(type_name)
        attributes = payload.get(field) if field is not None else None
        if not isinstance(attributes, dict):
            return set()
        return {
            name.lower()
            for name, value in attributes.items()
            if isinstance(value, dict)
            and name.lower().startswith("urn:")
            and name.lower() not in self.fields.extensions
        }

    # Reading.

    def holds_personal_data(self, type_name: str) -> bool:
        return type_name in self.fields.profiles

    def open_payload(
        self, payload: dict[str, Any], org_id: uuid.UUID, user_id: uuid.UUID, key: AESGCM | None
    ) -> dict[str, Any]:
        """`payload` with every encrypted value decrypted, or ERASED where `key` is None (destroyed)."""
        opened, changed = _open(payload, org_id, user_id, key, "")
        return opened if changed else payload

    def open_records(self, records: Sequence[Any], wrapped_keys: Mapping[UserKey, bytes]) -> list[Any]:
        """`records` (RecordedEvents) with their payloads decrypted, given the wrapped keys of their users
        that still exist."""
        opened = []
        for record in records:
            if record.type not in self.fields.profiles:
                opened.append(record)
                continue
            wrapped = wrapped_keys.get((record.org_id, record.stream_id))
            key = self.unwrap(wrapped) if wrapped is not None else None
            payload = self.open_payload(record.payload, record.org_id, record.stream_id, key)
            opened.append(
                record if payload is record.payload else msgspec.structs.replace(record, payload=payload)
            )
        return opened


def _open(
    value: Any, org_id: uuid.UUID, user_id: uuid.UUID, key: AESGCM | None, path: str
) -> tuple[Any, bool]:
    if isinstance(value, dict):
        if len(value) == 1 and ERASABLE in value:
            return _decrypt(value[ERASABLE], org_id, user_id, key, path), True
        changed = False
        opened = {}
        for name, item in value.items():
            opened[name], item_changed = _open(item, org_id, user_id, key, f"{path}/{name}" if path else name)
            changed = changed or item_changed
        return (opened if changed else value), changed
    return value, False


def _decrypt(token: str, org_id: uuid.UUID, user_id: uuid.UUID, key: AESGCM | None, path: str) -> Any:
    if key is None:
        return ERASED
    data = base64.b64decode(token)
    try:
        plaintext = key.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], _aad(org_id, user_id, path))
    except InvalidTag as error:
        # Not this user's, this attribute's or this event's value: moved, or tampered with.
        raise ValueError(f"the encrypted value at {path} of user {user_id} does not belong there") from error
    return _json_decoder.decode(plaintext)


async def fetch_keys(connection: Any, users: Iterable[UserKey]) -> dict[UserKey, bytes]:
    """The wrapped keys of `users` that still exist, in one query."""
    wanted = list(set(users))
    if not wanted:
        return {}
    rows = await connection.fetch(_KEYS, [org for org, _ in wanted], [user for _, user in wanted])
    return {(row["org_id"], row["user_id"]): row["wrapped_key"] for row in rows}


async def custom_personal_attributes(
    connection: Any, org_id: uuid.UUID, urns: Iterable[str]
) -> dict[str, frozenset[str]]:
    """The attributes of the organization's extensions `urns` (lower-cased) that it marks as personal."""
    found: dict[str, set[str]] = {}
    for urn, name in await connection.fetch(_CUSTOM_PERSONAL, org_id, sorted(urns)):
        found.setdefault(urn, set()).add(name)
    return {urn: frozenset(names) for urn, names in found.items()}


def cipher_of(connection: Any) -> PersonalDataCipher | None:
    """The cipher the connection's pool was made with (eventstore.pool.create_pool), if any."""
    cipher: PersonalDataCipher | None = getattr(connection, "personal_data", None)
    return cipher


async def readable(connection: Any, records: Sequence[Any]) -> list[Any]:
    """Records (RecordedEvents) read from the log, with their personal values decrypted, or ERASED where the
    user's key is gone: what every reader of the log but the sealer shows. One query for the keys of all the
    users in the batch, none when no record may hold personal data. `connection` may be a pool."""
    if isinstance(connection, asyncpg.Pool):
        async with connection.acquire() as acquired:
            return await readable(acquired, records)
    cipher = cipher_of(connection)
    if cipher is None:
        # A connection made without the cipher (a tool's, a test's): what is stored, ciphertext included.
        return list(records)
    users = {
        (record.org_id, record.stream_id) for record in records if cipher.holds_personal_data(record.type)
    }
    if not users:
        return list(records)
    return cipher.open_records(records, await fetch_keys(connection, users))


def opened_rows(
    rows: Sequence[Any], cipher: PersonalDataCipher | None
) -> tuple[list[RecordedEvent], dict[UserKey, bytes]]:
    """The events of rows read with their streams' wrapped data keys as a last column (the store's stream reads),
    decrypted; and those keys."""
    records = [RecordedEvent(*row[:-1]) for row in rows]
    keys = {
        (row["org_id"], row["stream_id"]): row["wrapped_key"]
        for row in rows
        if row["wrapped_key"] is not None
    }
    return (cipher.open_records(records, keys) if cipher is not None else records), keys


async def sealing(
    cipher: PersonalDataCipher,
    connection: Any,
    known_keys: dict[UserKey, bytes],
    appends: Sequence[StreamAppend],
) -> tuple[PayloadSeal | None, dict[UserKey, bytes]]:
    """How an append's personal values are encrypted, and the data keys it must store: a new one for each user
    whose stream it starts, or whose key does not exist yet (a user provisioned before encryption).
    `known_keys`: the wrapped keys the transaction has read already; those of the other users are fetched in
    one query and added to it."""
    profiles: dict[UserKey, StreamAppend] = {}
    custom_urns: dict[uuid.UUID, set[str]] = {}
    for append in appends:
        for event in append.events:
            type_name = get_topic(type(event))
            if cipher.holds_personal_data(type_name):
                profiles[(append.org_id, append.stream_id)] = append
                field = cipher.fields.profiles[type_name]
                custom_urns.setdefault(append.org_id, set()).update(
                    cipher.custom_urns(type_name, {field: getattr(event, field)})
                )
    if not profiles:
        return None, {}
    unknown = [
        user for user, append in profiles.items() if user not in known_keys and append.expected_version > 0
    ]
    if unknown:
        known_keys.update(await fetch_keys(connection, unknown))
    keys: dict[UserKey, AESGCM] = {}
    new_keys: dict[UserKey, bytes] = {}
    for user in profiles:
        wrapped = known_keys.get(user)
        if wrapped is None:
            keys[user], new_keys[user] = cipher.new_key()
        else:
            keys[user] = cipher.unwrap(wrapped)
    custom = {
        org_id: await custom_personal_attributes(connection, org_id, urns)
        for org_id, urns in custom_urns.items()
        if urns
    }

    def seal(
        org_id: uuid.UUID, user_id: uuid.UUID, type_name: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        key = keys.get((org_id, user_id))
        if key is None:
            return payload
        return cipher.seal_payload(type_name, payload, org_id, user_id, key, custom.get(org_id, {}))

    return seal, new_keys


async def in_batches(rows: AsyncIterable[Any], size: int) -> AsyncIterator[list[Any]]:
    """A cursor's rows, `size` at a time: the keys of each batch's users are asked for in one query, between
    two of the cursor's fetches."""
    batch: list[Any] = []
    async for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def readable_rows(connection: Any, rows: AsyncIterable[Any], batch: int) -> AsyncIterator[Any]:
    """`readable` for rows of EVENT_COLUMNS read through a cursor on `connection`, a batch at a time."""
    async for pending in in_batches(rows, batch):
        for event in await readable(connection, [RecordedEvent(*row) for row in pending]):
            yield event


async def destroy_data_key(connection: Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Delete the user's data key, for ever; whether there was one. Run it in the transaction that records the
    erasure, so that the event and the key's destruction commit together or not at all."""
    return await connection.fetchval(_DESTROY, org_id, user_id) is not None
