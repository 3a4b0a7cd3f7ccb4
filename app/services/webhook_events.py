"""A provisional body for webhook deliveries, until the public event vocabulary (issue 21, point 3) is wired in
its place in app/bootstrap.py: the dispatcher takes any `render` and `event_type_of` (see
app/services/webhook_delivery.py) and knows nothing of this one.

The type is the domain event's type name in the public spelling: its first word, a dot, the rest in snake case
(a user's creation becomes 'user.created'); the body carries the event's fields as the log holds them.
"""

from __future__ import annotations

import re
from typing import Any

from app.services.webhooks import webhook_id_of
from eventstore.records import RecordedEvent

_WORD = re.compile(r"[A-Z][a-z0-9]*")


def provisional_event_type(event: RecordedEvent) -> str | None:
    words = [word.lower() for word in _WORD.findall(event.type)]
    if len(words) < 2:
        return None
    return f"{words[0]}.{'_'.join(words[1:])}"


def provisional_body(event: RecordedEvent) -> dict[str, Any] | None:
    event_type = provisional_event_type(event)
    if event_type is None:
        return None
    return {
        "id": webhook_id_of(event.position),
        "type": event_type,
        "occurred_at": event.occurred_at.isoformat(),
        "org_id": str(event.org_id),
        "actor": event.actor,
        "request_id": event.request_id,
        "data": {"id": str(event.stream_id), **event.payload},
    }
