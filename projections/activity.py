"""analytics.provisioning_activity: how many events of each type each organization saw each day (UTC).

An asynchronous projection, kept by the runner. Counting is the strictest check of exactly-once
processing: an event applied twice, or lost, shows in the totals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from eventstore.pool import Connection
from eventstore.store import RecordedEvent, Transaction


class ProvisioningActivity:
    name = "analytics.provisioning_activity"
    event_types: frozenset[str] | None = None

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        counts = Counter((event.org_id, event.occurred_at.date(), event.type) for event in events)
        keys = list(counts)
        await transaction.connection.execute(
            "INSERT INTO analytics.provisioning_activity (org_id, day, event_type, events) "
            "SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::bigint[]) "
            "ON CONFLICT (org_id, day, event_type) "
            "DO UPDATE SET events = analytics.provisioning_activity.events + EXCLUDED.events",
            [key[0] for key in keys],
            [key[1] for key in keys],
            [key[2] for key in keys],
            [counts[key] for key in keys],
        )

    async def reset(self, connection: Connection) -> None:
        await connection.execute("DELETE FROM analytics.provisioning_activity")
