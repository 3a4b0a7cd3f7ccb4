"""`/api/v1/orgs/{org}/users`: the organization's users as its admin sees them (listed, searched, shown with
their groups and status), invited from the app before the identity provider is connected, removed from the
organization and restored, their personal data erased; and the organization's retention policy. Under the
same rules as `scimledger user …` and `scimledger org retention` (the same services: users.py, erasure.py,
retention.py, and the user directory the CLI lists from)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.http.api.edge import (
    OrgAccess,
    decode_body,
    idempotent,
    org_access,
    page,
    page_after,
    page_limit,
    path_text,
    query_text,
)
from app.http.api.responses import ApiError, JsonResponse
from app.http.endpoint import services_of
from app.services import retention
from app.services.users import Invitation
from domain.errors import NotFound
from projections import user_directory
from projections.user_directory import UserFilter, UserSummary

Status = Literal["active", "inactive", "removed"]
_STATUS_FILTERS = user_directory.STATUS_FILTERS


class Removal(msgspec.Struct, frozen=True):
    cause: str | None
    at: datetime.datetime | None
    by: str | None


class UserOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_name: str
    display_name: str | None
    status: Status
    active: bool
    member: bool
    # Why, when and by whom the user left the organization; null while a member.
    removal: Removal | None
    groups: int


def _user(user: UserSummary) -> UserOutput:
    status: Status = "removed" if not user.member else "active" if user.active else "inactive"
    removal = None if user.member else Removal(user.removed_cause, user.removed_at, user.removed_by)
    return UserOutput(
        user.user_id,
        user.user_name,
        user.display_name,
        status,
        user.active,
        user.member,
        removal,
        user.groups,
    )


class GroupHeldOutput(msgspec.Struct, frozen=True):
    id: uuid.UUID
    display_name: str
    project: str
    role: str
    since: datetime.datetime


class UserDetailOutput(msgspec.Struct, frozen=True):
    user: UserOutput
    # The SCIM profile, as GET /scim/v2/Users/{id} has it.
    profile: dict[str, Any]
    groups: list[GroupHeldOutput]


class UserKey(msgspec.Struct, frozen=True):
    sort_key: int


async def list_users(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    limit, after = page_limit(request), page_after(request, "users", UserKey)
    status = request.query_params.get("status")
    if status is not None and status not in _STATUS_FILTERS:
        raise ApiError(400, f"status must be one of {', '.join(_STATUS_FILTERS)}; it was '{status}'.")
    wanted = dataclasses.replace(
        _STATUS_FILTERS[status] if status else UserFilter(),
        user_name=query_text(request, "user_name"),
        name=query_text(request, "name"),
    )
    async with services_of(request).pool.acquire() as connection:
        found = await user_directory.users_page(
            connection, access.org_id, wanted, after.sort_key if after else -1, limit + 1
        )
    return page(found, limit, "users", lambda item: UserKey(item[1]), lambda item: _user(item[0]))


async def _user_id(request: Request, access: OrgAccess) -> uuid.UUID:
    """The user the path names, by id or by userName (ignoring case, as SCIM does)."""
    reference = path_text(request, "user")
    async with services_of(request).pool.acquire() as connection:
        user_id = await user_directory.find_user(connection, access.org_id, reference)
    if user_id is None:
        raise NotFound(f"No user '{reference}' (by id or userName) in this organization.")
    return user_id


async def _detail(request: Request, access: OrgAccess, user_id: uuid.UUID) -> UserDetailOutput:
    async with services_of(request).pool.acquire() as connection:
        detail = await user_directory.user_detail(connection, access.org_id, user_id)
    if detail is None:  # deleted since it was found
        raise NotFound(f"No user {user_id} in this organization.")
    groups = [
        GroupHeldOutput(group.group_id, group.display_name, group.project, group.role, group.since)
        for group in detail.groups
    ]
    profile = {key: value for key, value in detail.resource.items() if key != "groups"}
    return UserDetailOutput(_user(detail.summary), profile, groups)


async def show_user(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    return JsonResponse(await _detail(request, access, await _user_id(request, access)))


class InviteInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """An invitation (app/services/users.py, Invitation) as JSON."""

    user_name: Annotated[str, msgspec.Meta(min_length=1)]
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    external_id: str | None = None


async def invite_user(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    services = services_of(request)

    async def invite(body: bytes) -> Response:
        invitation = Invitation(**msgspec.structs.asdict(decode_body(body, InviteInput)))
        row = await services.users.invite(
            access.org_id, invitation, access.metadata, services.settings.max_identifier_length
        )
        return JsonResponse(await _detail(request, access, row.user_id), status_code=201)

    return await idempotent(request, access.principal, invite)


async def remove_user(request: Request) -> Response:
    """Remove the user from the organization, as `scimledger user remove` does: their access is revoked and
    the identity provider sees them inactive; only a restore (or an explicit reactivation) undoes it."""
    access = await org_access(request, request.path_params["org"])
    user_id = await _user_id(request, access)
    await services_of(request).users.remove_from_organization(access.org_id, user_id, access.metadata)
    return JsonResponse(await _detail(request, access, user_id))


async def restore_user(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])

    async def restore(body: bytes) -> Response:
        user_id = await _user_id(request, access)
        await services_of(request).users.restore(access.org_id, user_id, access.metadata)
        return JsonResponse(await _detail(request, access, user_id))

    return await idempotent(request, access.principal, restore)


class ErasureInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`reason`: why, as the log keeps it for the auditors (a ticket number, the request's date); never the
    person's own data, which is refused."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class ErasureOutput(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    erased_at: datetime.datetime
    # Who asked: this request's token.
    actor: str
    reason: str


async def _erasable_user_id(request: Request, access: OrgAccess) -> uuid.UUID:
    """The user the path names: by id, deleted or not (a deleted user is listed nowhere, but erased by id);
    by userName while they are listed (removed from the organization, not deleted)."""
    try:
        return uuid.UUID(path_text(request, "user"))
    except ValueError:
        return await _user_id(request, access)


async def erase_user(request: Request) -> Response:
    """Erase the personal data of a user deleted or removed from the organization, as `scimledger user erase
    --yes` does (409 for a member, or one already erased)."""
    access = await org_access(request, request.path_params["org"])

    async def erase(body: bytes) -> Response:
        wanted = decode_body(body, ErasureInput)
        user_id = await _erasable_user_id(request, access)
        done = await services_of(request).erasure.erase(
            access.org_id, user_id, wanted.reason, access.metadata
        )
        return JsonResponse(ErasureOutput(done.user_id, done.erased_at, done.actor, done.reason))

    return await idempotent(request, access.principal, erase)


class RetentionOutput(msgspec.Struct, frozen=True):
    """`days`: how many days after a user was deleted or removed their personal data is erased; null: kept
    until an admin erases it (the default)."""

    days: int | None
    description: str


class RetentionInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    days: retention.RetentionDays | None


async def show_retention(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    async with services_of(request).pool.acquire() as connection:
        policy = await retention.policy_of(connection, access.org_id)
    return JsonResponse(RetentionOutput(policy.days, policy.described()))


async def set_retention(request: Request) -> Response:
    access = await org_access(request, request.path_params["org"])
    wanted = decode_body(await request.body(), RetentionInput)
    async with services_of(request).pool.acquire() as connection:
        policy = await retention.set_policy(connection, access.org_id, retention.RetentionPolicy(wanted.days))
    return JsonResponse(RetentionOutput(policy.days, policy.described()))


ROUTES = [
    Route("/orgs/{org}/users", list_users, methods=["GET"]),
    Route("/orgs/{org}/users", invite_user, methods=["POST"]),
    Route("/orgs/{org}/users/{user}", show_user, methods=["GET"]),
    Route("/orgs/{org}/users/{user}", remove_user, methods=["DELETE"]),
    Route("/orgs/{org}/users/{user}/restore", restore_user, methods=["POST"]),
    Route("/orgs/{org}/users/{user}/erasure", erase_user, methods=["POST"]),
    Route("/orgs/{org}/retention", show_retention, methods=["GET"]),
    Route("/orgs/{org}/retention", set_retention, methods=["PUT"]),
]
