"""Group writes: Okta pushing membership into the app's Project × Role groups."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from app.users import PreconditionFailed
from domain.catalog import Group
from domain.errors import ConcurrencyConflict, DomainError, NotFound
from domain.users import User
from eventstore.store import EventStore, Metadata, Transaction
from projections import scim_groups
from projections.scim import ScimProjection
from projections.scim_groups import GroupRow
from scim.group_patch import GroupChange, MembershipStep
from scim.patch import MAX_PATCH_COMPARISONS, Budget, filter_size, matches
from scim.schema import GROUP_SCHEMA

_ATTEMPTS = 10
_MEMBERS = GROUP_SCHEMA.attribute("members")
assert _MEMBERS is not None


class InvalidMember(DomainError):
    """A member id that names no active user of this organization."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"'{member}' {reason}; nothing in this request was applied.")
        self.member = member


class GroupService:
    def __init__(
        self, store: EventStore, projection: ScimProjection, max_comparisons: int = MAX_PATCH_COMPARISONS
    ) -> None:
        self._store = store
        self._projection = projection
        self._max_comparisons = max_comparisons

    async def change(
        self,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        change: GroupChange,
        metadata: Metadata,
        if_match: Callable[[int], bool] | None = None,
        cause: str = "push",
    ) -> GroupRow:
        """Apply a PATCH or PUT: all of it or, on any invalid member, none of it. The first write links."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._store.transaction() as transaction:
                    # Writes to one group queue here, so a full resync reads a membership nobody else changes.
                    await transaction.lock_stream(group_id)
                    row = await self._visible(transaction, org_id, group_id, if_match)
                    change.check_identity(str(group_id), row.display_name)
                    adds, removes = await self._targets(
                        transaction, org_id, group_id, change.steps, Budget(self._max_comparisons)
                    )
                    users = await transaction.load(org_id, [*adds, *removes])
                    group = (await transaction.load(org_id, [group_id]))[group_id]
                    assert isinstance(group, Group)
                    decide = functools.partial(_decide, users, adds, removes, group, cause)
                    # Thousands of members are as many decisions: hundreds of milliseconds off the event loop.
                    changed = (
                        await asyncio.to_thread(decide)
                        if len(adds) + len(removes) > OFF_LOOP_MEMBERS
                        else decide()
                    )
                    recorded = await transaction.save(org_id, [group, *changed], metadata)
                    await self._projection.apply(transaction.connection, recorded, users)
                    return await self._visible(transaction, org_id, group_id)
            except ConcurrencyConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def unlink(
        self,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        metadata: Metadata,
        if_match: Callable[[int], bool] | None = None,
    ) -> None:
        """DELETE: the identity provider lets go of the group. Its memberships go; the group stays."""
        async with self._store.transaction() as transaction:
            await transaction.lock_stream(group_id)
            await self._visible(transaction, org_id, group_id, if_match)
            members = await scim_groups.member_ids(transaction.connection, org_id, group_id)
            users = await transaction.load(org_id, members)
            for user in users.values():
                user.leave_group(str(group_id), "unlink")
            group = (await transaction.load(org_id, [group_id]))[group_id]
            group.unlink("unlink")
            recorded = await transaction.save(org_id, [*users.values(), group], metadata)
            await self._projection.apply(transaction.connection, recorded, users)

    @staticmethod
    async def _visible(
        transaction: Transaction,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        if_match: Callable[[int], bool] | None = None,
    ) -> GroupRow:
        row = await scim_groups.get(transaction.connection, org_id, group_id)
        if row is None:
            raise NotFound(f"No group {group_id}.")
        if if_match is not None and not if_match(row.version):
            raise PreconditionFailed(row.version)
        return row

    @staticmethod
    async def _targets(
        transaction: Transaction,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        steps: Sequence[MembershipStep],
        budget: Budget,
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Which users to add and which to remove, applying the steps in order; adds keep the request's order,
        which is the order members are listed in. Every step costs the ids it names, except a removal by a
        filter other than ids, which scans the whole membership and spends `budget` for it."""
        desired: dict[uuid.UUID, bool] = {}
        members: list[dict[str, str]] | None = None  # read once, however many steps filter it
        replaced = False
        for step in steps:
            if step.kind in ("replace", "remove_all"):
                replaced, desired = True, {}
            if step.kind in ("add", "replace"):
                for member in step.ids:
                    user_id = _user_id(member)
                    if user_id is None:
                        raise InvalidMember(member, "is not a user of this organization")
                    desired[user_id] = True
            elif step.kind == "remove":
                for member in step.ids:
                    user_id = _user_id(member)
                    if user_id is not None:  # removing what cannot exist is a no-op
                        desired[user_id] = False
            elif step.kind == "remove_matching":
                assert step.matching is not None
                assert _MEMBERS is not None
                if members is None:
                    current = await scim_groups.members_of(transaction.connection, org_id, [group_id])
                    members = [
                        {"value": str(member.user_id), "display": member.display, "type": "User"}
                        for member in current[group_id]
                    ]
                budget.spend(len(members) * filter_size(step.matching))
                for element in members:
                    if matches(step.matching, element, _MEMBERS):
                        desired[uuid.UUID(element["value"])] = False
        adds = [user_id for user_id, wanted in desired.items() if wanted]
        removes = [user_id for user_id, wanted in desired.items() if not wanted]
        if replaced:
            current_ids = await scim_groups.member_ids(transaction.connection, org_id, group_id)
            removes += sorted(current_ids - set(adds) - set(removes))
        return adds, removes


# Beyond this many members, a request's membership decisions are made in a worker thread (see
# eventstore.store.OFF_LOOP_EVENTS, which moves their events' encoding there too).
OFF_LOOP_MEMBERS = 1000


def _decide(
    users: dict[uuid.UUID, Any],
    adds: list[uuid.UUID],
    removes: list[uuid.UUID],
    group: Group,
    cause: str,
) -> list[User]:
    """Each member joins or leaves, all or none; the users whose events to record, in a defined order: the
    link first (the caller records the group before them), then removals, then additions as requested."""
    group_id = str(group.id)
    for user_id in adds:
        user = users.get(user_id)
        if not isinstance(user, User) or user.deleted:
            raise InvalidMember(str(user_id), "is not a user of this organization")
        if not user.active:
            raise InvalidMember(str(user_id), "is a deactivated user and cannot be a member")
        user.join_group(group_id, cause)
    for user_id in removes:
        user = users.get(user_id)
        if isinstance(user, User):
            user.leave_group(group_id, cause)
    group.link()
    return [users[user_id] for user_id in [*removes, *adds] if user_id in users]


def _user_id(member: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(member)
    except ValueError:
        return None
