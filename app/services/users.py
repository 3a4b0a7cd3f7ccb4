"""User commands: load the aggregate from its stream, let it decide, and save its events; the store writes
the SCIM projection in the same transaction (see projections/scim.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import msgspec
from starlette.concurrency import run_in_threadpool

from domain.errors import NotFound, PreconditionFailed
from domain.users import ADMIN_REMOVAL, Departure, User
from eventstore.pool import Connection
from eventstore.records import Metadata
from eventstore.store import ConcurrencyConflict, EventStore, Transaction
from projections import scim_users
from projections.scim_users import UserRow, row_of, scim_resource
from scim.core_schemas import USER
from scim.patch import DEFAULT_LIMITS, PatchLimits, apply_patch
from scim.patch_request import PatchOperation
from scim.resource_type import ResourceType
from scim.schema import MAX_IDENTIFIER_LENGTH

# A PATCH or PUT that loses a race is decided again on the newer state, unless the client pinned the version
# it saw with If-Match: then the race is the client's to resolve (412). Retries queue on a stream lock, so
# each round at least every queued writer but one succeeds.
_ATTEMPTS = 10


def split_active(attributes: Mapping[str, Any]) -> tuple[dict[str, Any], bool | None]:
    profile = dict(attributes)
    active = profile.pop("active", None)
    return profile, active


async def _load(transaction: Transaction, org_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = (await transaction.load(org_id, [user_id])).get(user_id)
    if not isinstance(user, User) or user.deleted:
        raise NotFound(f"No user {user_id}.")
    return user


class Invitation(msgspec.Struct, frozen=True):
    """A user the app records before the identity provider is connected: the provider's import then finds them
    (by userName, or by e-mail), matches them, and manages them from then on."""

    user_name: Annotated[str, msgspec.Meta(min_length=1)]
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    external_id: str | None = None

    def scim_user(self) -> dict[str, Any]:
        """The SCIM User the invitation records, as the identity provider would have sent it."""
        resource: dict[str, Any] = {"userName": self.user_name, "active": True}
        name = {"givenName": self.given_name, "familyName": self.family_name}
        if any(name.values()):
            resource["name"] = {key: value for key, value in name.items() if value}
        if self.display_name:
            resource["displayName"] = self.display_name
        if self.email:
            resource["emails"] = [{"value": self.email, "type": "work", "primary": True}]
        if self.external_id:
            resource["externalId"] = self.external_id
        return resource


class UserService:
    def __init__(self, store: EventStore, limits: PatchLimits = DEFAULT_LIMITS) -> None:
        self._store = store
        self._limits = limits

    async def provision(
        self, org_id: uuid.UUID, attributes: Mapping[str, Any], metadata: Metadata
    ) -> UserRow:
        profile, active = split_active(attributes)
        user = User(org_id=str(org_id), attributes=profile, active=True if active is None else active)
        async with self._store.autocommit() as transaction:
            await transaction.save(org_id, [user], metadata)
        return row_of(user)

    async def invite(
        self,
        org_id: uuid.UUID,
        invitation: Invitation,
        metadata: Metadata,
        max_identifier_length: int = MAX_IDENTIFIER_LENGTH,
    ) -> UserRow:
        """Record a user from the app, validated as POST /scim/v2/Users validates one: an ordinary SCIM user,
        in GET /Users for the identity provider's import, with the same userName uniqueness."""
        attributes = USER.validate(invitation.scim_user(), max_identifier_length)
        return await self.provision(org_id, attributes, metadata)

    async def get(self, connection: Connection, org_id: uuid.UUID, user_id: uuid.UUID) -> UserRow:
        row = await scim_users.get(connection, org_id, user_id)
        if row is None:
            raise NotFound(f"No user {user_id}.")
        return row

    async def replace(
        self,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        attributes: Mapping[str, Any],
        metadata: Metadata,
        if_match: Callable[[int], bool] | None = None,
        off_loop: bool = False,
    ) -> UserRow:
        profile, active = split_active(attributes)

        def decide(user: User) -> None:
            user.replace(profile, active)

        return await self._change(org_id, user_id, decide, metadata, if_match, off_loop)

    async def patch(
        self,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        operations: Sequence[PatchOperation],
        metadata: Metadata,
        if_match: Callable[[int], bool] | None = None,
        off_loop: bool = False,
        resource_type: ResourceType = USER,
    ) -> UserRow:
        """`resource_type`: the organization's User type, with the extensions it declared."""

        def decide(user: User) -> None:
            current = scim_resource(user)
            patched = apply_patch(
                resource_type, current, operations, read_only={"id": str(user.id)}, limits=self._limits
            )
            profile, active = split_active(patched)
            user.replace(profile, active, patch=True)
            if active is None and "active" in current:
                # Removed (or set to null): unassigned, which counts as not active (see User.unassign_active).
                user.unassign_active()

        return await self._change(org_id, user_id, decide, metadata, if_match, off_loop)

    async def remove_from_organization(
        self, org_id: uuid.UUID, user_id: uuid.UUID, metadata: Metadata
    ) -> Departure | None:
        """An org admin removes the user in the app; a reactor then revokes access and marks them inactive.

        Returns how the user had already left the organization, if they had (their identity provider
        deactivated them), as the state the removal was decided on holds it; None for a member."""
        earlier: list[Departure | None] = [None]

        def decide(user: User) -> None:
            earlier[0] = user.departure  # the state of this attempt: a retry decides again on newer state
            user.remove_from_organization(ADMIN_REMOVAL)

        await self._change(org_id, user_id, decide, metadata, None)
        return earlier[0]

    async def restore(self, org_id: uuid.UUID, user_id: uuid.UUID, metadata: Metadata) -> UserRow:
        """An org admin undoes their removal: the user is a member and active again, and Okta's next import
        sees `active: true`."""
        return await self._change(org_id, user_id, lambda user: user.restore(), metadata, None)

    async def delete(
        self,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        metadata: Metadata,
        if_match: Callable[[int], bool] | None = None,
    ) -> None:
        await self._change(org_id, user_id, User.delete, metadata, if_match)

    async def _change(
        self,
        org_id: uuid.UUID,
        user_id: uuid.UUID,
        decide: Callable[[User], None],
        metadata: Metadata,
        if_match: Callable[[int], bool] | None,
        off_loop: bool = False,
    ) -> UserRow:
        """`off_loop`: decide in a worker thread, for a large request (see app.http.reading.OFFLOAD_BYTES). A user who
        already holds many values is decided there too: a small PATCH's value filter scans every one of them."""
        for attempt in range(_ATTEMPTS):
            try:
                # The first attempt reads, then appends with its row in one statement, optimistically. A
                # retry queues on the stream's lock, which only lasts as long as an explicit transaction.
                async with (
                    self._store.autocommit() if attempt == 0 else self._store.transaction()
                ) as transaction:
                    if attempt > 0:
                        await transaction.lock_stream(user_id)
                    user = await _load(transaction, org_id, user_id)
                    if if_match is not None and not if_match(user.version):
                        raise PreconditionFailed(user.version)
                    if off_loop or _holds_many_values(user):
                        await run_in_threadpool(decide, user)
                    else:
                        decide(user)
                    await transaction.save(org_id, [user], metadata)
                    groups = (
                        await scim_users.groups_of(transaction.connection, org_id, user_id)
                        if (user.groups and not user.deleted)
                        else []
                    )
                return row_of(user, groups)
            except ConcurrencyConflict:
                if if_match is not None or attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


# Values a user may hold in its multi-valued attributes before a change to it is decided off the event loop,
# as a body of OFFLOAD_BYTES would be: a PATCH of a few bytes (`emails[value co "x"]`) compares every value.
OFFLOAD_VALUES = 1000


def _holds_many_values(user: User) -> bool:
    return sum(len(value) for value in user.attributes.values() if isinstance(value, list)) > OFFLOAD_VALUES
