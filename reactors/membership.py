"""The integration's promises about who belongs to the organization.

- "If a user is unassigned or deactivated in Okta, the app removes them from the organization":
  `DeactivationRemovesFromOrganization`.
- "When a user is removed from the app, Okta automatically unassigns them": `RemovalDeactivates`, which
  marks the user inactive so that Okta's next GET or import sees active false.

Each decides from the user's current state, not from the event alone: replaying an event changes nothing
more, and a deactivation that Okta already reversed removes nobody.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.users import User
from eventstore.store import Metadata, RecordedEvent, Transaction
from projections.scim import ScimProjection


class UserReactor:
    name: str
    event_types: frozenset[str]

    def __init__(self, projection: ScimProjection) -> None:
        self._projection = projection

    async def handle(self, transaction: Transaction, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            if not self.concerns(event):
                continue
            user = (await transaction.load(event.org_id, [event.stream_id])).get(event.stream_id)
            if not isinstance(user, User):
                continue
            self.decide(user, event)
            # The decision carries the request id of what caused it, so an auditor can follow the chain.
            metadata = Metadata(actor=f"reactor:{self.name}", request_id=event.request_id)
            recorded = await transaction.save(event.org_id, [user], metadata)
            await self._projection.apply(transaction.connection, recorded, {user.id: user})

    def concerns(self, event: RecordedEvent) -> bool:
        raise NotImplementedError

    def decide(self, user: User, event: RecordedEvent) -> None:
        raise NotImplementedError


class DeactivationRemovesFromOrganization(UserReactor):
    """Deactivated or deleted over SCIM → removed from the organization and from every group."""

    name = "reactor.deactivation_removes_from_organization"
    event_types = frozenset({"UserDeactivated", "UserDeleted"})

    def concerns(self, event: RecordedEvent) -> bool:
        # Only what the identity provider did: the other reactor deactivates users too, for another reason.
        return event.actor.startswith("token:")

    def decide(self, user: User, event: RecordedEvent) -> None:
        if event.type == "UserDeactivated" and user.active:
            return  # reactivated since
        user.remove_from_organization("okta_delete" if event.type == "UserDeleted" else "okta_deactivation")
        user.revoke_all_groups("reactor")


class RemovalDeactivates(UserReactor):
    """Removed in the app by an admin → every group membership revoked, and shown inactive over SCIM."""

    name = "reactor.removal_deactivates"
    event_types = frozenset({"UserRemovedFromOrganization"})

    def concerns(self, event: RecordedEvent) -> bool:
        return event.payload.get("cause") == "admin"

    def decide(self, user: User, event: RecordedEvent) -> None:
        if user.member or user.deleted:
            return  # back in the organization since, or gone altogether
        user.revoke_all_groups("reactor")
        user.set_active(False)
