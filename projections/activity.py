"""analytics.provisioning_activity: how many events of each type each organization saw each day (UTC).

An asynchronous projection, kept by the runner. Counting is the strictest check of exactly-once
processing: an event applied twice, or lost, shows in the totals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from eventstore.pool import Connection
from eventstore.records import RecordedEvent
from eventstore.store import Transaction


class ProvisioningActivity:
    event_types: frozenset[str] | None = None
    tables = ("provisioning_activity",)
    # It counts events by type and day and reads no payload: the runner spares it their decryption.
    reads_stored_payloads = True

    def __init__(self, schema: str = "analytics", name: str = "analytics.provisioning_activity") -> None:
        self.schema = schema
        self.name = name

    def relocated(self, schema: str, name: str) -> ProvisioningActivity:
        return ProvisioningActivity(schema, name)

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        counts = Counter((event.org_id, event.occurred_at.date(), event.type) for event in events)
        keys = list(counts)
        await transaction.connection.execute(
            f"INSERT INTO {self.schema}.provisioning_activity (org_id, day, event_type, events) "
            "SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::bigint[]) "
            "ON CONFLICT (org_id, day, event_type) "
            f"DO UPDATE SET events = {self.schema}.provisioning_activity.events + EXCLUDED.events",
            [key[0] for key in keys],
            [key[1] for key in keys],
            [key[2] for key in keys],
            [counts[key] for key in keys],
        )

    async def reset(self, connection: Connection) -> None:
        await connection.execute(f"DELETE FROM {self.schema}.provisioning_activity")
