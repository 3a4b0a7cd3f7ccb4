"""The integration's promises about who belongs to the organization.

- "If a user is unassigned or deactivated in Okta, the app removes them from the organization":
  `DeactivationRemovesFromOrganization`.
- "When a user is removed from the app, Okta automatically unassigns them": `RemovalDeactivates`, which
  marks the user inactive so that Okta's next GET or import sees active false.

Each decides from the user's current state, not from the event alone: replaying an event changes nothing
more, and a deactivation that Okta already reversed removes nobody.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from domain.users import User
from eventstore.records import Metadata, RecordedEvent
from eventstore.store import Transaction


class UserReactor:
    name: str
    event_types: frozenset[str]

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        """Decide on a whole batch at once: each organization's users are loaded in one query, decided on
        in log order, and all their decisions saved at once (the store projects them in the same transaction)."""
        by_org: dict[uuid.UUID, list[RecordedEvent]] = {}
        for event in events:
            if self.concerns(event):
                by_org.setdefault(event.org_id, []).append(event)
        for org_id, concerned in by_org.items():
            users = await transaction.load(org_id, {event.stream_id for event in concerned})
            decided: dict[uuid.UUID, User] = {}
            causes: dict[uuid.UUID, list[Metadata]] = {}
            for event in concerned:
                user = users.get(event.stream_id)
                if not isinstance(user, User):
                    continue
                already = len(user.pending_events)
                self.decide(user, event)
                # Each decision carries the request id of what caused it, so an auditor can follow the chain.
                cause = Metadata(actor=f"reactor:{self.name}", request_id=event.request_id)
                causes.setdefault(user.id, []).extend([cause] * (len(user.pending_events) - already))
                decided[user.id] = user
            await transaction.save(org_id, decided.values(), Metadata(actor=f"reactor:{self.name}"), causes)

    def concerns(self, event: RecordedEvent) -> bool:
        raise NotImplementedError

    def decide(self, user: User, event: RecordedEvent) -> None:
        raise NotImplementedError


class DeactivationRemovesFromOrganization(UserReactor):
    """Deactivated or deleted over SCIM → removed from the organization and from every group."""

    name = "reactor.deactivation_removes_from_organization"
    event_types = frozenset({User.Deactivated.TOPIC, User.Deleted.TOPIC})

    def concerns(self, event: RecordedEvent) -> bool:
        # Only what the identity provider did: the other reactor deactivates users too, for another reason.
        return event.actor.startswith("token:")

    def decide(self, user: User, event: RecordedEvent) -> None:
        if event.type == User.Deactivated.TOPIC and user.active:
            return  # reactivated since
        user.remove_from_organization(
            "okta_delete" if event.type == User.Deleted.TOPIC else "okta_deactivation"
        )
        user.revoke_all_groups("reactor")


class RemovalDeactivates(UserReactor):
    """Removed in the app by an admin → every group membership revoked, and shown inactive over SCIM."""

    name = "reactor.removal_deactivates"
    event_types = frozenset({User.RemovedFromOrganization.TOPIC})

    def concerns(self, event: RecordedEvent) -> bool:
        return event.payload.get("cause") == "admin"

    def decide(self, user: User, event: RecordedEvent) -> None:
        if user.member or user.deleted:
            return  # back in the organization since, or gone altogether
        user.revoke_all_groups("reactor")
        user.set_active(False)
