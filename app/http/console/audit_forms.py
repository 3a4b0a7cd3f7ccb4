"""What the audit pages share: their section, how they read (one read-only snapshot), and how they read
their query's fields: instants as ISO 8601 or as a browser's datetime-local value (taken as UTC), windows,
names. A field the page cannot use is a `BadInput`, which the page shows above its form with a 400."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from starlette.requests import Request

from app.http.endpoint import services_of
from eventstore.pool import Connection
from projections import audit, audit_history
from projections.audit import Snapshot
from projections.user_directory import find_user
from scim.folding import fold
from scim.instants import parse_instant

SECTION = "audit"
T = TypeVar("T")
# No name or id is longer; a longer field is no filter of ours.
_MAX_FIELD = 300


class BadInput(ValueError):
    """A field of the page's form it cannot use, in words for the person who typed it."""


class UnknownReference(Exception):
    """A user or group field that names nothing of the organization's: a 404, said above the form with the
    field cleared, so that the page repeats nothing of another organization's ids. Not a domain error (the
    console's pages catch it, each with its form)."""

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field_name


async def read_snapshot(request: Request, query: Callable[[Connection], Awaitable[T]]) -> T:
    """Run `query` in one read-only, repeatable-read snapshot, as /audit reads (app/http/audit_routes.py)."""
    async with (
        services_of(request).pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        return await query(connection)


def field(params: Mapping[str, str], name: str) -> str | None:
    """A text field, stripped; None when empty. U+0000 is in no name (and PostgreSQL's text cannot hold it)."""
    text = (params.get(name) or "").strip()
    if not text:
        return None
    if "\x00" in text or len(text) > _MAX_FIELD:
        raise BadInput(f"'{name}' is not a name or an id this organization could have.")
    return text


def instant(params: Mapping[str, str], name: str, label: str) -> datetime.datetime | None:
    text = field(params, name)
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as error:
        raise BadInput(f"{label}: {error} A time without an offset is taken as UTC.") from error


def window(params: Mapping[str, str]) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """The fields `from` and `to`, either open. A reversed window is a BadInput."""
    start, end = instant(params, "from", "From"), instant(params, "to", "To")
    problem = audit.window_error(start, end, "From", "To")
    if problem is not None:
        raise BadInput(problem)
    return start, end


def bounded_window(
    params: Mapping[str, str], default: datetime.timedelta
) -> tuple[datetime.datetime, datetime.datetime]:
    """The fields `from` and `to`, a missing bound filled in: `to` now, `from` `default` before `to`."""
    start, end = window(params)
    if end is None:
        now = datetime.datetime.now(datetime.UTC)
        end = max(now, start) if start is not None else now
    if start is not None:
        return start, end
    try:
        return end - default, end
    except OverflowError:
        raise BadInput(
            f"A window ending at {end.isoformat()} with no start would begin before the year 1: give a 'from'."
        ) from None


def choice(params: Mapping[str, str], name: str, choices: Mapping[str, object]) -> str | None:
    """A field whose value is one of `choices`' keys (a select's), or empty."""
    value = field(params, name)
    if value is not None and value not in choices:
        raise BadInput(f"'{value}' is not one of the choices for '{name}'.")
    return value


def window_fields(
    params: Mapping[str, str], start: datetime.datetime, end: datetime.datetime
) -> tuple[str, str]:
    """The window's fields as the form shows them again: a bound the query gave, to the second; a bound it
    left empty stays empty, so that submitting the form again keeps meaning "now" (a `to` written into the
    form as the second it was drawn would leave out whatever is recorded after)."""
    return (
        form_instant(start) if field(params, "from") else "",
        form_instant(end) if field(params, "to") else "",
    )


def form_instant(moment: datetime.datetime | None) -> str:
    """An instant as a datetime-local field's value: UTC, to the second."""
    if moment is None:
        return ""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def identifier(params: Mapping[str, str], name: str) -> uuid.UUID | None:
    text = field(params, name)
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError as error:
        raise BadInput(f"'{name}' takes an id, not '{text}'.") from error


async def resolve_user(connection: Connection, org_id: uuid.UUID, reference: str) -> uuid.UUID:
    """The organization's user by id or userName; UnknownReference for anyone else's."""
    found = await find_user(connection, org_id, reference)
    if found is None:
        # A user deleted since is in no directory, but their history and grants are still the log's.
        try:
            stream = uuid.UUID(reference)
        except ValueError:
            stream = None
        if stream is not None and await audit_history.has_stream(connection, org_id, stream):
            return stream
        raise UnknownReference("user", "No user by that userName or id in this organization.")
    return found


async def check_user_reference(connection: Connection, org_id: uuid.UUID, reference: str) -> None:
    """A user filter matched by the replay itself (by id, or by a userName as it was then): an id must be one
    of the organization's (UnknownReference otherwise); a name is the caller's own text."""
    try:
        user_id = uuid.UUID(reference)
    except ValueError:
        return
    if await find_user(connection, org_id, reference) is None and not await audit_history.has_stream(
        connection, org_id, user_id
    ):
        raise UnknownReference("user", "No user by that userName or id in this organization.")


def group_named(catalog: Snapshot, group_id: uuid.UUID) -> str:
    """A group of the organization's catalog (archived ones included), by its name; UnknownReference
    otherwise."""
    if group_id not in catalog.groups:
        raise UnknownReference("group", "No group with that id in this organization.")
    return catalog.group_name(group_id)


def catalog_subjects(catalog: Snapshot, project: str | None, role: str | None) -> frozenset[uuid.UUID] | None:
    """The streams a history filtered by project and/or role is about: the project's (or role's) own, and
    its groups'; for both, the pair's groups. Matched by id or by latest name, ignoring case. None when
    neither is given."""
    if project is None and role is None:
        return None

    def matching(entities: Mapping[uuid.UUID, object], reference: str | None) -> set[uuid.UUID]:
        return {
            entity_id
            for entity_id, entity in entities.items()
            if reference is not None
            and (str(entity_id) == reference.lower() or fold(getattr(entity, "name", "")) == fold(reference))
        }

    projects, roles = matching(catalog.projects, project), matching(catalog.roles, role)
    groups = {
        group_id
        for group_id, group in catalog.groups.items()
        if (project is None or uuid.UUID(group.project_id) in projects)
        and (role is None or uuid.UUID(group.role_id) in roles)
    }
    if project is not None and role is not None:
        return frozenset(groups)
    return frozenset(groups | projects | roles)
