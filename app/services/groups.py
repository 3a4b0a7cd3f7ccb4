"""Group writes: Okta pushing membership into the app's Project × Role groups."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from domain.catalog import Group, Project, Role
from domain.errors import InvalidMember, ManagedByIdentityProvider, NotFound, PreconditionFailed
from domain.users import GroupChangeCause, User
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import ConcurrencyConflict, EventStore, Transaction
from projections import scim_groups
from projections.scim_groups import GroupProjector, GroupRow
from scim.core_schemas import GROUP_SCHEMA
from scim.folding import fold
from scim.group_patch import GroupChange, MembershipStep, renamed_in_app
from scim.patch import MAX_PATCH_COMPARISONS, Budget, filter_size, matches

_ATTEMPTS = 10
_MEMBERS = GROUP_SCHEMA.attribute("members")
assert _MEMBERS is not None


def _not_a_user(member: str, displays: dict[str, str]) -> str:
    sent = displays.get(member)
    return f"'{member}'{f' (sent as {sent!r})' if sent else ''} is not a user of this organization"


class GroupService:
    def __init__(
        self, store: EventStore, groups: GroupProjector, max_comparisons: int = MAX_PATCH_COMPARISONS
    ) -> None:
        self._store = store
        self._groups = groups  # for the groups' names only: the store projects what is saved
        self._max_comparisons = max_comparisons

    async def change(
        self,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        change: GroupChange,
        metadata: Metadata,
        if_match: Callable[[int], bool] | None = None,
        cause: GroupChangeCause = "push",
    ) -> GroupRow:
        """Apply a PATCH or PUT: all of it or, on any invalid member, none of it. The first write links."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._store.transaction() as transaction:
                    # Writes to one group queue here, so a full resync reads a membership nobody else changes.
                    await transaction.lock_stream(group_id)
                    row = await self._visible(transaction, org_id, group_id, if_match)
                    sent_name = change.other_name(row.display_name)
                    if sent_name is not None:
                        await self._refuse_a_former_name(transaction, org_id, row, sent_name)
                    change.check_identity(str(group_id), row.display_name)
                    adds, removes, malformed = await self._targets(
                        transaction, org_id, group_id, change.steps, Budget(self._max_comparisons)
                    )
                    users = await transaction.load(org_id, [*adds, *removes])
                    group = (await transaction.load(org_id, [group_id]))[group_id]
                    assert isinstance(group, Group)
                    decide = functools.partial(
                        _decide, users, adds, removes, group, cause, malformed, change.displays
                    )
                    # Thousands of members are as many decisions: hundreds of milliseconds off the event loop.
                    changed = (
                        await asyncio.to_thread(decide)
                        if len(adds) + len(removes) > OFF_LOOP_MEMBERS
                        else decide()
                    )
                    await transaction.save(org_id, [group, *changed], metadata)
                    return await self._visible(transaction, org_id, group_id)
            except ConcurrencyConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def grant(
        self, org_id: uuid.UUID, group_id: uuid.UUID, user_id: uuid.UUID, member: bool, metadata: Metadata
    ) -> bool:
        """An org admin adds (`member`) or removes a member in the app. Only in a group the identity provider
        has not linked: once linked, its membership is the identity provider's, which would undo the app's
        change at its next push. Returns whether anything changed (adding a member twice changes nothing).
        Queues on the group's stream lock as the identity provider's writes do, so a link and a grant happen
        one after the other, never across each other."""
        async with self._store.transaction() as transaction:
            await transaction.lock_stream(group_id)
            row = await self._visible(transaction, org_id, group_id)
            if row.linked:
                raise ManagedByIdentityProvider(
                    f"The group '{row.display_name}' is linked to the identity provider (Okta's Push Groups), "
                    "which manages its membership: add or remove the member there (assign the person to the "
                    "pushed group in Okta). To manage it in the app instead, unlink the group in Okta first."
                )
            user = (await transaction.load(org_id, [user_id])).get(user_id)
            if not isinstance(user, User) or user.deleted:
                raise NotFound(f"No user {user_id} in this organization.")
            before = user.version
            if member:
                user.join_group(str(group_id), "app")  # refuses a user who may not be given access
            else:
                user.leave_group(str(group_id), "app")
            if user.version == before:
                return False
            await transaction.save(org_id, [user], metadata)
            return True

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
            await transaction.save(org_id, [*users.values(), group], metadata)

    async def missing(self, connection: Connection, org_id: uuid.UUID, group_id: uuid.UUID) -> NotFound:
        """The error for a group that is not in SCIM: never one of this organization's, or one whose project
        or role the app archived, which the admin is told, and when. Only a request that missed pays for it."""
        transaction = Transaction(connection)
        group = (await transaction.load(org_id, [group_id])).get(group_id)
        if not isinstance(group, Group):
            return NotFound(f"No group {group_id} in this organization.")
        project, role = await self._pair(transaction, org_id, group)
        archivals = [entity.archival() for entity in (project, role) if entity.archived]
        if not archivals:  # between its creation and its projection; not seen outside a race
            return NotFound(f"No group {group_id} in this organization.")
        name = self._groups.display_name(project.name, role.name)
        return NotFound(
            f"The group '{name}' no longer exists: {' and '.join(archivals)}, which removed its groups and "
            "every member's access through them. Nothing in this request was applied. In Okta, unlink the "
            "group under Push Groups; there is nothing left in the app to delete."
        )

    async def _refuse_a_former_name(
        self, transaction: Transaction, org_id: uuid.UUID, row: GroupRow, sent: str
    ) -> None:
        """Refuse, saying so, a push that carries a name the group had before the app renamed its project or
        role. A name it never had is left to `check_identity`: that is Okta renaming the group."""
        group = (await transaction.load(org_id, [row.group_id]))[row.group_id]
        project, role = await self._pair(transaction, org_id, group)
        folded = fold(sent)
        for former_project in project.names:
            for former_role in role.names:
                if fold(self._groups.display_name(former_project, former_role)) == folded:
                    renamings = [
                        entity.renamed_since(former)
                        for entity, former in ((project, former_project), (role, former_role))
                        if former != entity.name
                    ]
                    if renamings:
                        raise renamed_in_app(sent, row.display_name, renamings)

    @staticmethod
    async def _pair(transaction: Transaction, org_id: uuid.UUID, group: Group) -> tuple[Project, Role]:
        project_id, role_id = uuid.UUID(group.project_id), uuid.UUID(group.role_id)
        loaded = await transaction.load(org_id, [project_id, role_id])
        project, role = loaded[project_id], loaded[role_id]
        assert isinstance(project, Project)
        assert isinstance(role, Role)
        return project, role

    async def _visible(
        self,
        transaction: Transaction,
        org_id: uuid.UUID,
        group_id: uuid.UUID,
        if_match: Callable[[int], bool] | None = None,
    ) -> GroupRow:
        row = await scim_groups.get(transaction.connection, org_id, group_id)
        if row is None:
            raise await self.missing(transaction.connection, org_id, group_id)
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
    ) -> tuple[list[uuid.UUID], list[uuid.UUID], list[str]]:
        """Which users to add and which to remove, applying the steps in order, and the members to add that
        are no id at all; adds keep the request's order, which is the order members are listed in. Every step
        costs the ids it names, except a removal by a filter other than ids, which scans the whole membership
        and spends `budget` for it."""
        desired: dict[uuid.UUID, bool] = {}
        malformed: list[str] = []
        members: list[dict[str, str]] | None = None  # read once, however many steps filter it
        replaced = False
        for step in steps:
            if step.kind in ("replace", "remove_all"):
                replaced, desired = True, {}
            if step.kind in ("add", "replace"):
                for member in step.ids:
                    user_id = _user_id(member)
                    if user_id is None:
                        malformed.append(member)
                    else:
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
        return adds, removes, malformed


# Beyond this many members, a request's membership decisions are made in a worker thread (see
# eventstore.store.OFF_LOOP_EVENTS, which moves their events' encoding there too).
OFF_LOOP_MEMBERS = 1000


def _decide(
    users: dict[uuid.UUID, Any],
    adds: list[uuid.UUID],
    removes: list[uuid.UUID],
    group: Group,
    cause: GroupChangeCause,
    malformed: list[str],
    displays: dict[str, str],
) -> list[User]:
    """Each member joins or leaves, all or none; the users whose events to record, in a defined order: the
    link first (the caller records the group before them), then removals, then additions as requested.

    Every member who may not be added is found before anything is decided, and all of them are named, from
    the users already loaded: a refusal costs no round trip, however many members the request adds.
    """
    group_id = str(group.id)
    refused = [_not_a_user(member, displays) for member in malformed]
    unknown = list(malformed)
    for user_id in adds:
        user = users.get(user_id)
        if not isinstance(user, User):
            refused.append(_not_a_user(str(user_id), displays))
            unknown.append(str(user_id))
        elif (refusal := user.access_refusal()) is not None:
            refused.append(f"{user.described()} {refusal}")
    if refused:
        raise InvalidMember(refused, unknown)
    for user_id in adds:
        users[user_id].join_group(group_id, cause)
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
