"""Personal data in user events, encrypted with a key per person (issue 23, point 1), on real PostgreSQL."""

from __future__ import annotations

import datetime
import json
import uuid

import asyncpg
import pytest
from cryptography.fernet import MultiFernet

from app.infrastructure.personal_data_keys import PERSONAL_FIELDS, personal_data_cipher, rewrap_all
from app.infrastructure.settings import Settings
from app.services.container import Services
from app.services.org_schemas import parse
from domain.users import User
from eventstore.personal_data import ERASED, PersonalDataCipher, destroy_data_key
from eventstore.pool import create_pool
from eventstore.records import Metadata
from eventstore.store import EventStore
from projections import audit_state
from projections.seals import seal_pending, verify
from tests.conftest import PERSONAL_DATA_KEY, PERSONAL_DATA_NEXT_KEY

OKTA = Metadata("token:okta-personal")
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PERSONAL_VALUES = ("ada@personal.example", "Lovelace", "Augusta", "+44 20 7946 0000", "E-1815", "Ada L")


def ada(user_name: str = "ada@personal.example") -> dict[str, object]:
    return {
        "userName": user_name,
        "name": {"givenName": "Augusta", "familyName": "Lovelace"},
        "displayName": "Ada L",
        "emails": [{"value": "ada@personal.example", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "work"}],
        "title": "Analyst",
        ENTERPRISE: {"employeeNumber": "E-1815", "department": "Engines"},
        "active": True,
    }


async def stored_payloads(pool: asyncpg.Pool, user_id: uuid.UUID) -> str:
    rows = await pool.fetch("SELECT payload::text FROM events WHERE stream_id = $1", user_id)
    return "\n".join(row[0] for row in rows)


async def test_the_stored_payloads_hold_no_personal_value_and_every_reader_shows_them(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    user_id = (await services.users.provision(org_id, ada(), OKTA)).user_id
    await services.users.replace(org_id, user_id, {**ada(), "displayName": "Countess"}, OKTA)
    stored = await stored_payloads(pool, user_id)
    for value in (*PERSONAL_VALUES, "Countess"):
        assert value not in stored
    assert "Analyst" in stored
    assert "Engines" in stored
    assert await pool.fetchval("SELECT count(*) FROM personal_data_keys WHERE user_id = $1", user_id) == 1
    async with services.store.transaction() as transaction:
        user = (await transaction.load(org_id, [user_id]))[user_id]
    assert user.attributes["displayName"] == "Countess"
    assert user.attributes[ENTERPRISE]["employeeNumber"] == "E-1815"
    history = await services.store.read_stream(org_id, user_id)
    assert history[0].payload["attributes"]["emails"][0]["value"] == "ada@personal.example"


async def test_after_its_key_is_destroyed_the_user_reads_as_erased_and_the_seals_still_verify(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    user_id = (await services.users.provision(org_id, ada("erased@personal.example"), OKTA)).user_id
    await services.users.delete(org_id, user_id, OKTA)
    async with pool.acquire() as connection:
        await seal_pending(connection)
        assert await destroy_data_key(connection, org_id, user_id)
    async with services.store.transaction() as transaction:
        user = (await transaction.load(org_id, [user_id]))[user_id]
    assert isinstance(user, User)
    assert user.user_name == ERASED
    assert user.deleted
    assert user.attributes["emails"] == ERASED
    assert user.attributes["title"] == "Analyst"
    state = await audit_state.state_at(pool, org_id, datetime.datetime.now(datetime.UTC), "Statsig")
    assert state is not None
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        verdict = await verify(connection, org_id, max_unsealed_age=datetime.timedelta(hours=1))
    assert verdict.problem is None, verdict
    assert verdict.checked >= 2


async def test_a_ciphertext_moved_to_another_user_does_not_decrypt() -> None:
    cipher = PersonalDataCipher(lambda: MultiFernet([]), PERSONAL_FIELDS, RuntimeError)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = AESGCM(AESGCM.generate_key(bit_length=256))
    org_id, alice, mallory = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sealed = cipher.seal_payload(
        "UserProvisioned", {"attributes": {"userName": "alice"}}, org_id, alice, key, {}
    )
    assert cipher.open_payload(sealed, org_id, alice, key)["attributes"]["userName"] == "alice"
    with pytest.raises(ValueError, match="does not belong there"):
        cipher.open_payload(sealed, org_id, mallory, key)
    moved = {"attributes": {"displayName": sealed["attributes"]["userName"]}}
    with pytest.raises(ValueError, match="does not belong there"):
        cipher.open_payload(moved, org_id, alice, key)


async def test_rotating_the_key_encryption_key_rewraps_every_key_and_everything_still_decrypts(
    services: Services, pool: asyncpg.Pool, settings: Settings
) -> None:
    org_id = uuid.uuid4()
    user_id = (await services.users.provision(org_id, ada("rotated@personal.example"), OKTA)).user_id
    before = await pool.fetchval("SELECT wrapped_key FROM personal_data_keys WHERE user_id = $1", user_id)
    rotated = Settings(
        database_url=settings.database_url,
        personal_data_keys=f"{PERSONAL_DATA_NEXT_KEY},{PERSONAL_DATA_KEY}",
    )
    cipher = personal_data_cipher(rotated)
    async with pool.acquire() as connection:
        assert await rewrap_all(connection, cipher) >= 1
    after = await pool.fetchval("SELECT wrapped_key FROM personal_data_keys WHERE user_id = $1", user_id)
    assert after != before
    only_new = personal_data_cipher(Settings(database_url="x", personal_data_keys=PERSONAL_DATA_NEXT_KEY))
    assert only_new.unwrap(after) is not None
    assert settings.database_url is not None
    rotated_pool = await create_pool(settings.database_url, min_size=1, max_size=1, personal_data=only_new)
    try:
        user = (await EventStore(rotated_pool).read_stream(org_id, user_id))[0]
        assert user.payload["attributes"]["userName"] == "rotated@personal.example"
    finally:
        await rotated_pool.close()


async def test_an_event_written_before_encryption_still_reads_as_it_was(
    services: Services, settings: Settings
) -> None:
    assert settings.database_url is not None
    plain_pool = await create_pool(settings.database_url, min_size=1, max_size=1)  # no cipher: plaintext
    try:
        org_id = uuid.uuid4()
        user = User(org_id=str(org_id), attributes={"userName": "old@personal.example"}, active=True)
        async with EventStore(plain_pool).transaction() as transaction:
            await transaction.save(org_id, [user], OKTA)
        stored = await plain_pool.fetchval("SELECT payload::text FROM events WHERE stream_id = $1", user.id)
        assert "old@personal.example" in stored
    finally:
        await plain_pool.close()
    [event] = await services.store.read_stream(org_id, user.id)
    assert event.payload["attributes"]["userName"] == "old@personal.example"
    # Its next change is encrypted, under a key made for it then.
    await services.users.replace(
        org_id, user.id, {"userName": "old@personal.example", "displayName": "Newer"}, OKTA
    )
    events = await services.store.read_stream(org_id, user.id)
    assert events[-1].payload["changed"]["displayName"] == "Newer"


async def test_an_organizations_own_attribute_marked_personal_is_encrypted_and_the_others_are_not(
    services: Services, pool: asyncpg.Pool
) -> None:
    org_id = uuid.uuid4()
    urn = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
    document = {
        "id": urn,
        "attributes": [{"name": "badge", "personal": True}, {"name": "desk"}],
    }
    await services.schemas.declare(org_id, parse(json.dumps(document).encode()), OKTA)
    profile = {"userName": "badge@personal.example", urn: {"badge": "B-4242", "desk": "D-17"}}
    user_id = (await services.users.provision(org_id, profile, OKTA)).user_id
    stored = await stored_payloads(pool, user_id)
    assert "B-4242" not in stored
    assert "D-17" in stored
    [event] = await services.store.read_stream(org_id, user_id)
    assert event.payload["attributes"][urn] == {"badge": "B-4242", "desk": "D-17"}
