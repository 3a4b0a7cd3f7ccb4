"""Personal data in the log, encrypted with a key per person (crypto-shredding).

The contract the rest of the service relies on; the cipher itself lives beside it:
- a user's personal attributes are stored in their events encrypted with that user's data key, a row of
  `personal_data_keys` (migration 0026);
- erasing the user deletes that row (`destroy_data_key`), in the transaction that records the erasure;
- from then on, reading those events shows ERASED in place of each attribute whose key is gone.
"""

from __future__ import annotations

import uuid

import asyncpg

# What every reader shows in place of a personal value whose key has been destroyed.
ERASED = "[erased]"

_DESTROY = "DELETE FROM personal_data_keys WHERE org_id = $1 AND user_id = $2 RETURNING user_id"


async def destroy_data_key(connection: asyncpg.Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Delete the user's data key, for ever; whether there was one. Run it in the transaction that records the
    erasure, so that the event and the key's destruction commit together or not at all."""
    return await connection.fetchval(_DESTROY, org_id, user_id) is not None
