"""The User aggregate: an organization member provisioned by an identity provider over SCIM.

`attributes` is the user's profile in SCIM's canonical shape (userName, name, emails, the enterprise
extension...), already validated by the protocol layer. The aggregate decides which facts a request
amounts to: a replace that changes nothing records nothing, deactivating an inactive user records
nothing, and a deleted user accepts nothing more.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NamedTuple

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, InactiveMember, NotErasable, UserDeletedError, moment
from domain.personal_data import personal_values, quotes

Attributes = dict[str, Any]

# Why a user left the organization, as `User.RemovedFromOrganization` records it: a reactor's decision after
# the identity provider deactivated or deleted them, or an org admin's removal in the app.
DepartureCause = Literal["okta_deactivation", "okta_delete", "admin"]
# Why a user who had left became a member again, as `User.JoinedOrganization` records it.
ReturnCause = Literal["okta_reactivation", "admin_restore"]
# Why a user joined or left a group: the identity provider pushed it, unlinked the group, the app archived the
# group's project or role, a reactor revoked it, or an org admin granted or revoked it in the app (in a group
# the identity provider has not linked).
GroupChangeCause = Literal["push", "unlink", "archive", "reactor", "app"]

# The cause of an org admin's removal in the app, as `User.RemovedFromOrganization` records it.
ADMIN_REMOVAL: DepartureCause = "admin"


# How a departure the identity provider caused is told to an org admin.
_DEPARTURE_REASONS: dict[str, str] = {"okta_deactivation": "deactivated them", "okta_delete": "deleted them"}


# Who a user's erasure was asked by when no person asked: the organization's retention policy, run by the
# runner (see app/services/retention.py). An actor like "admin:<name>" or "token:<id>" in the log's metadata.
RETENTION_ACTOR = "retention"


class Departure(NamedTuple):
    """Why and when a user left the organization: a `User.RemovedFromOrganization`'s cause and time."""

    cause: DepartureCause
    on: datetime.datetime


class User(Aggregate):
    TOPIC: ClassVar[str] = "User"

    class Created(Aggregate.Created):
        """Never recorded: the library defines a generic creation event on every aggregate, and an aggregate
        with explicit topics must name it too. Users are created by Provisioned."""

        TOPIC: ClassVar[str] = "UserCreated"

    class Provisioned(Aggregate.Created):
        """The user was created. Version 2 holds every profile attribute, e-mail included, in `attributes`;
        version 1 kept the primary e-mail address in a field of its own."""

        TOPIC: ClassVar[str] = "UserProvisioned"
        class_version: ClassVar[int] = 2
        org_id: str
        attributes: Attributes
        active: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            attributes = state.setdefault("attributes", {})
            email = state.pop("email", None)
            if email and "emails" not in attributes:
                attributes["emails"] = [{"value": email, "type": "work", "primary": True}]

    class ProfileUpdated(Aggregate.Event):
        """Top-level attributes that took new values, and those that became unassigned."""

        TOPIC: ClassVar[str] = "UserProfileUpdated"
        changed: Attributes
        removed: list[str]

    class Deactivated(Aggregate.Event):
        """The user is not active. `unassigned`: their `active` attribute became unassigned (a SCIM PATCH
        removed it, RFC 7644 §3.5.2.2), which counts as not active; false when it was set to false.

        A field of this event rather than an event of its own: unassigning `active` deactivates the user with
        every consequence of `active: false`, so every consumer of deactivations (the reactors, analytics,
        the audit) must see it as one, and only the SCIM rendering tells the two apart. Version 1 had no such
        field: every deactivation set `active` to false."""

        TOPIC: ClassVar[str] = "UserDeactivated"
        class_version: ClassVar[int] = 2
        unassigned: bool = False

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["unassigned"] = False

    class Reactivated(Aggregate.Event):
        TOPIC: ClassVar[str] = "UserReactivated"

    class Deleted(Aggregate.Event):
        TOPIC: ClassVar[str] = "UserDeleted"

    class JoinedGroup(Aggregate.Event):
        """Recorded on the user's stream, so that a membership change costs the same whatever the group's
        size. `cause`: "push" (the identity provider pushed it), "unlink", "archive", "reactor", or "app" (an
        admin granted it in the app, to a group the identity provider has not linked)."""

        TOPIC: ClassVar[str] = "GroupMemberAdded"
        group_id: str
        cause: GroupChangeCause

    class LeftGroup(Aggregate.Event):
        TOPIC: ClassVar[str] = "GroupMemberRemoved"
        group_id: str
        cause: GroupChangeCause

    class RemovedFromOrganization(Aggregate.Event):
        """`cause`: "okta_deactivation" or "okta_delete" (decided by a reactor after the identity provider
        deactivated or deleted the user), or "admin" (an org admin removed the user in the app). An admin's
        removal may follow the identity provider's, for a user who had left already (see
        `User.remove_from_organization`): the projections of state (analytics.users, the directory, the
        audit's replays) take it as a change of cause, not a second departure; only
        analytics.provisioning_activity, which counts events, counts it as the event it is."""

        TOPIC: ClassVar[str] = "UserRemovedFromOrganization"
        cause: DepartureCause

    class JoinedOrganization(Aggregate.Event):
        """A removed user became a member again; provisioning itself makes the user a member."""

        TOPIC: ClassVar[str] = "UserJoinedOrganization"
        cause: ReturnCause

    class Erased(Aggregate.Event):
        """The person's data was erased: their data key destroyed in the same transaction, so the personal
        attributes of their earlier events can no longer be read, and every projection dropped their rows.
        Who asked is the event's actor (an admin, a token, or `RETENTION_ACTOR`), when is its time; `reason`
        is why, in the asker's words, which `User.erase` checks hold none of the person's data."""

        TOPIC: ClassVar[str] = "UserErased"
        reason: str

    @event(Provisioned)
    def __init__(self, org_id: str, attributes: Attributes, active: bool) -> None:
        self.org_id = org_id
        self.attributes = dict(attributes)
        self.active = active
        self.deleted = False
        self.groups: set[str] = set()
        self.member = True
        # `active` was removed by a client: the user is not active, and shows no `active` until one sets it.
        self.active_unassigned = False
        # Why and when they left the organization, while they are out of it: what a refused membership and the
        # CLI tell an admin.
        self.departure: Departure | None = None
        # The identity provider's own departure an admin's removal was recorded on top of, if any.
        self.left_before_removal: Departure | None = None
        # When the identity provider deleted the user (SCIM DELETE), while deleted: when retention counts from.
        self.deleted_on: datetime.datetime | None = None
        # The person's data was erased: the user is gone as a deleted one is, for good (see `erase`).
        self.erased = False

    @property
    def admin_removal(self) -> Departure | None:
        """The user's removal by an org admin in the app, while it holds: only an explicit activation or the
        admin's restore undoes it."""
        return (
            self.departure if self.departure is not None and self.departure.cause == ADMIN_REMOVAL else None
        )

    @property
    def removed_by_admin(self) -> bool:
        return self.admin_removal is not None

    @property
    def user_name(self) -> str:
        name: str = self.attributes["userName"]
        return name

    def described(self) -> str:
        """The user as an admin recognises them: userName, and the display name when there is one (the
        displayName, else the formatted name, else given and family names)."""
        name = self.attributes.get("name")
        name = name if isinstance(name, dict) else {}
        parts = (name.get("givenName"), name.get("familyName"))
        display = (
            self.attributes.get("displayName")
            or name.get("formatted")
            or " ".join(part for part in parts if isinstance(part, str) and part)
        )
        return f"'{self.user_name}' ({display})" if display else f"'{self.user_name}'"

    def access_refusal(self) -> str | None:
        """Why this user may not be given access to a group, in words for an admin; None when they may.

        Only active members of the organization may. One an admin removed is refused from the moment of the
        removal, before the reactor has revoked their access and deactivated them, and told apart from one
        the identity provider deactivated. Every other way out of the organization starts with a deactivation
        (the reactor removes only users who are inactive, and any activation of a removed user makes them a
        member again), so any other refusal is the identity provider's deactivation.
        """
        if self.deleted:
            return "was deleted by the identity provider"
        if self.active and self.member:
            return None
        if (removal := self.admin_removal) is not None:
            return f"was removed from the organization in the app on {moment(removal.on)}"
        return "is deactivated in the identity provider"

    def replace(self, attributes: Mapping[str, Any], active: bool | None, *, patch: bool = False) -> None:
        """Make the profile equal `attributes`, and `active` equal `active` unless None: a SCIM PUT, or (`patch`)
        the result of a PATCH.

        Only a PATCH whose sole effect is to turn `active` from false to true activates explicitly (see
        `set_active`): Okta's `{"op":"replace","value":{"active":true}}` and Entra's `{"op":"Replace",
        "path":"active","value":"True"}`, how each reactivates someone assigned again. A PATCH that changes the
        profile too is a routine update: Entra's sends every attribute that differs from what it read,
        `active` among them once the app shows the user inactive. It updates the profile and brings back
        nobody an admin removed.
        """
        self._require_not_deleted()
        changed = {key: value for key, value in attributes.items() if self.attributes.get(key) != value}
        removed = sorted(key for key in self.attributes if key not in attributes)
        profile_changes = bool(changed or removed)
        explicit = patch and not profile_changes and active is True and not self.active
        if profile_changes:
            self._update_profile(changed, removed)
        if active is not None:
            self.set_active(active, explicit=explicit)

    def unassign_active(self) -> None:
        """A client removed `active` (RFC 7644 §3.5.2.2): unassigned counts as not active, so the user is
        deactivated, with the consequences of `active: false`. Recorded for an inactive user too, since what
        the resource shows changes; an `active` already unassigned records nothing."""
        self._require_not_deleted()
        if not self.active_unassigned:
            self._deactivate(unassigned=True)

    def set_active(self, active: bool, *, explicit: bool = True) -> None:
        """Reactivating a user who was removed from the organization makes them a member again; their group
        memberships are not restored (the identity provider pushes them again).

        A user an org admin removed in the app stays removed unless the activation is explicit: Okta's
        routine profile push is a PUT that always carries `active: true`, while Okta and Entra reactivate with
        a PATCH that sets it. Were a push to count, the user would be back before Okta ever unassigned them.
        """
        self._require_not_deleted()
        if active and self.removed_by_admin and not explicit:
            # The user stays inactive; if a client had unassigned `active`, it is now assigned, to false, which
            # is what the answer says.
            if self.active_unassigned:
                self._deactivate(unassigned=False)
            return
        if active and not self.active:
            self._reactivate()
        elif not active and (self.active or self.active_unassigned):
            # An unassigned `active` set to false is assigned: recorded, so the resource shows it again.
            self._deactivate(unassigned=False)
        if active and not self.member:
            self._join_organization("okta_reactivation")

    def remove_from_organization(self, cause: DepartureCause) -> None:
        """The identity provider deactivated or deleted the user ("okta_deactivation", "okta_delete", decided by
        a reactor): a member leaves the organization; anyone else stays as they are.

        An org admin's removal in the app (`ADMIN_REMOVAL`) is recorded for a user who already left after their
        identity provider deactivated them too: it is what makes the removal hold, since a user who merely
        left is brought back by any activation, a profile push included. A user an admin already removed is
        refused, so that the admin is told there was nothing to do rather than that it was done.
        """
        if cause != ADMIN_REMOVAL:
            if self.member and not self.erased:
                self._remove_from_organization(cause)
            return
        self._require_not_deleted()
        if (removal := self.admin_removal) is not None:
            raise DomainError(
                f"User {self.described()} was already removed from the organization in the app on "
                f"{moment(removal.on)}: there is nothing more to remove."
            )
        self._remove_from_organization(cause)

    def restore(self) -> None:
        """An org admin undoes their removal in the app: a member again, and active again."""
        self._require_not_deleted()
        if not self.removed_by_admin:
            raise DomainError(
                f"User '{self.user_name}' was not removed in the app, so there is nothing to restore: "
                "their identity provider decides whether they are active."
            )
        if self.left_before_removal is not None:
            # Restoring would make them active in the app while their identity provider has them
            # deactivated; its own reactivation is explicit, so it undoes the admin's removal too.
            raise DomainError(
                f"User {self.described()} had already left the organization on "
                f"{moment(self.left_before_removal.on)} because their identity provider "
                f"{_DEPARTURE_REASONS.get(self.left_before_removal.cause, 'removed them')}, before the app "
                "removed them: reactivate them in the identity provider instead, which undoes the app's removal too."
            )
        self._join_organization("admin_restore")
        if not self.active:
            self._reactivate()

    def revoke_all_groups(self, cause: GroupChangeCause) -> None:
        for group_id in sorted(self.groups):
            self._leave_group(group_id, cause)

    def delete(self) -> None:
        self._require_not_deleted()
        self._delete()

    @property
    def left_on(self) -> datetime.datetime | None:
        """Since when the user has been out of the organization, deleted or removed; None for a member. What
        a retention period counts from: the earlier of the two, the moment their data stopped being needed."""
        removed_on = self.departure.on if self.departure is not None else None
        return min((when for when in (self.deleted_on, removed_on) if when is not None), default=None)

    def erasure_refusal(self) -> str | None:
        """Why this user's data may not be erased, in words for an admin; None when it may. Only a user the
        identity provider deleted, or who was removed from the organization, may be: a member's data is still
        what the organization works with."""
        if self.erased:
            return f"User {self.id}'s personal data was already erased: there is nothing more to erase."
        if self.deleted or not self.member:
            return None
        return (
            f"User {self.described()} is still a member of the organization, so their data is still in use: "
            "remove them from the organization (or have the identity provider delete them) first, then erase."
        )

    def erase(self, reason: str, *, reason_by_policy: bool = False) -> None:
        """Erase the person: their groups are revoked (a removed user whose revocation the reactor has not yet
        recorded still holds some), then `Erased` is recorded. The caller destroys their data key in the same
        transaction. `reason` is required and must not repeat the person's data, which it would otherwise keep
        in the log in the clear, for ever: a value is found as a whole word or words, so "Ted" is refused
        in "asked by Ted" and not in "user deleted". `reason_by_policy`: the reason is the service's own
        text (a retention policy's), which quotes nobody, so it is not compared with the person's data at
        all (a "Day" is a word of it)."""
        refusal = self.erasure_refusal()
        if refusal is not None:
            raise NotErasable(refusal)
        reason = " ".join(reason.split())
        if not reason:
            raise NotErasable(
                "An erasure needs a reason (a ticket number, the request's date): none was given."
            )
        if not reason_by_policy and any(quotes(reason, value) for value in personal_values(self.attributes)):
            raise NotErasable(
                "The reason repeats the person's own data (their userName, name or e-mail address), which the "
                "log would then keep for ever: give a reason without it, such as a ticket number."
            )
        self.revoke_all_groups("app")
        self._erase(reason)

    def join_group(self, group_id: str, cause: GroupChangeCause) -> None:
        """Only a live, active user may gain access; joining a group twice records nothing."""
        refusal = self.access_refusal()
        if refusal is not None:
            raise InactiveMember(self, refusal)
        if group_id not in self.groups:
            self._join_group(group_id, cause)

    def leave_group(self, group_id: str, cause: GroupChangeCause) -> None:
        if group_id in self.groups:
            self._leave_group(group_id, cause)

    def _require_not_deleted(self) -> None:
        if self.deleted:
            raise UserDeletedError(f"User {self.id} was {'erased' if self.erased else 'deleted'}.")

    @event(ProfileUpdated)
    def _update_profile(self, changed: Attributes, removed: list[str]) -> None:
        attributes = {key: value for key, value in self.attributes.items() if key not in removed}
        attributes.update(changed)
        self.attributes = attributes

    # The default is the event field's: a deactivation recorded without it is applied with none.
    @event(Deactivated)
    def _deactivate(self, unassigned: bool = False) -> None:
        self.active = False
        self.active_unassigned = unassigned

    @event(Reactivated)
    def _reactivate(self) -> None:
        self.active = True
        self.active_unassigned = False

    @event(Deleted)
    def _delete(self, timestamp: datetime.datetime | None = None) -> None:
        self.deleted = True
        self.deleted_on = timestamp

    @event(Erased)
    def _erase(self, reason: str) -> None:
        # Gone as a deleted user is: every reader of state (the SCIM projection, the audit's replays, the
        # services) drops or refuses a deleted user, so an erased one needs no reader of its own.
        self.deleted = True
        self.erased = True

    # `timestamp` is the event's own (the library passes an event's attributes to its method by name), so the
    # aggregate knows when without a field added to the event; the default only serves the call that
    # triggers the event, which the library then applies with its timestamp.
    @event(RemovedFromOrganization)
    def _remove_from_organization(
        self, cause: DepartureCause, timestamp: datetime.datetime | None = None
    ) -> None:
        assert timestamp is not None  # the library applies every event with its timestamp (see above)
        if cause == ADMIN_REMOVAL and self.departure is not None and self.departure.cause != ADMIN_REMOVAL:
            self.left_before_removal = self.departure
        self.member = False
        self.departure = Departure(cause, timestamp)

    @event(JoinedOrganization)
    def _join_organization(self, cause: ReturnCause) -> None:
        self.member = True
        self.departure = None
        self.left_before_removal = None

    @event(JoinedGroup)
    def _join_group(self, group_id: str, cause: GroupChangeCause) -> None:
        self.groups.add(group_id)

    @event(LeftGroup)
    def _leave_group(self, group_id: str, cause: GroupChangeCause) -> None:
        self.groups.discard(group_id)


EVENT_TYPES: tuple[type[Aggregate.Event], ...] = (
    User.Provisioned,
    User.ProfileUpdated,
    User.Deactivated,
    User.Reactivated,
    User.Deleted,
    User.JoinedGroup,
    User.LeftGroup,
    User.RemovedFromOrganization,
    User.JoinedOrganization,
    User.Erased,
)
# The events that carry profile values, by stored type name, and the field that holds them.
PROFILE_FIELDS: dict[str, str] = {User.Provisioned.TOPIC: "attributes", User.ProfileUpdated.TOPIC: "changed"}

# The events that change a user's groups, by stored type name: every reader of memberships picks these.
MEMBERSHIP_EVENT_TYPE_NAMES = frozenset({User.JoinedGroup.TOPIC, User.LeftGroup.TOPIC})
