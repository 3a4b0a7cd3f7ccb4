"""The app's access catalog: projects, roles, and the group of every Project × Role pair.

Projects and roles are created in the app, never through SCIM. A group belongs to one pair; an identity
provider links one of its own groups to it (the first SCIM write) and from then on pushes its members,
whose memberships are recorded on the users' streams (see domain/users.py).
"""

from __future__ import annotations

import datetime
import unicodedata
import uuid
from typing import ClassVar, Literal, NamedTuple

from eventsourcing.domain import Aggregate, event

from domain.errors import ArchivedError, DomainError, moment

# Why a group was unlinked: the identity provider deleted the link, or the app retired its project or role.
UnlinkCause = Literal["unlink", "archive"]

# The two kinds of entity an app admin names in the catalog; a group is the pair of one of each.
EntityKind = Literal["project", "role"]

MAX_NAME_LENGTH = 200
# Names are compared and indexed by their case folding (NFKC, then casefold), which can grow a character into
# many bytes (U+FDFA into 33): a bound in bytes of that form keeps every group name, `<prefix>-<project>-<role>`,
# well inside PostgreSQL's limit on an index entry (about 2,700 bytes), however the name is spelled.
MAX_FOLDED_NAME_BYTES = 600
_GROUP_NAMESPACE = uuid.UUID("6f1c7d2e-3a5b-4c8d-9e0f-1a2b3c4d5e6f")


def checked_name(name: str, what: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise DomainError(f"A {what} needs a name.")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise DomainError(f"A {what} name is at most {MAX_NAME_LENGTH} characters.")
    if len(unicodedata.normalize("NFKC", cleaned).casefold().encode()) > MAX_FOLDED_NAME_BYTES:
        raise DomainError(
            f"The {what} name is too long once its characters are spelled out in full (as names are compared): "
            f"use a shorter name or plainer characters."
        )
    return cleaned


class Renaming(NamedTuple):
    old: str
    new: str
    on: datetime.datetime


class _Named(Aggregate):
    """What projects and roles share: a name in an organization, renamed or archived in the app.

    It remembers when it was archived and how it was renamed, from its events' own timestamps (the library
    passes an event's `timestamp` to a method that names it), so that a push to one of its groups after
    the fact can be told what the app did, and when.
    """

    what: ClassVar[EntityKind]

    def _init(self, org_id: str, name: str) -> None:
        self.org_id = org_id
        self.name = name
        self.archived = False
        self.archived_on: datetime.datetime | None = None
        self.renamings: list[Renaming] = []

    @property
    def names(self) -> list[str]:
        """Every name it has had, the current one last."""
        return [*(renaming.old for renaming in self.renamings), self.name]

    def renamed_since(self, old: str) -> str:
        """How the app changed its name from `old`, which it had once, to the current one."""
        last = self.renamings[-1].on
        return f"the app renamed the {self.what} '{old}' to '{self.name}' on {moment(last)}"

    def archival(self) -> str:
        when = f" on {moment(self.archived_on)}" if self.archived_on is not None else ""
        return f"the app archived the {self.what} '{self.name}'{when}"

    def _record_rename(self, name: str, timestamp: datetime.datetime | None) -> None:
        if timestamp is not None:
            self.renamings.append(Renaming(self.name, name, timestamp))
        self.name = name

    def _record_archive(self, timestamp: datetime.datetime | None) -> None:
        self.archived = True
        self.archived_on = timestamp

    def rename(self, name: str) -> None:
        self._require_active()
        name = checked_name(name, self.what)
        if name != self.name:
            self._rename(name)

    def archive(self) -> None:
        if not self.archived:
            self._archive()

    def _require_active(self) -> None:
        if self.archived:
            raise ArchivedError(f"The {self.what} '{self.name}' is archived.")

    def _rename(self, name: str) -> None:
        raise NotImplementedError

    def _archive(self) -> None:
        raise NotImplementedError


class Project(_Named):
    TOPIC: ClassVar[str] = "Project"
    what = "project"

    class Created(Aggregate.Created):
        TOPIC: ClassVar[str] = "ProjectCreated"
        org_id: str
        name: str

    class Renamed(Aggregate.Event):
        TOPIC: ClassVar[str] = "ProjectRenamed"
        name: str

    class Archived(Aggregate.Event):
        TOPIC: ClassVar[str] = "ProjectArchived"

    @event(Created)
    def __init__(self, org_id: str, name: str) -> None:
        self._init(org_id, name)

    @event(Renamed)
    def _rename(self, name: str, timestamp: datetime.datetime | None = None) -> None:
        self._record_rename(name, timestamp)

    @event(Archived)
    def _archive(self, timestamp: datetime.datetime | None = None) -> None:
        self._record_archive(timestamp)


class Role(_Named):
    TOPIC: ClassVar[str] = "Role"
    what = "role"

    class Created(Aggregate.Created):
        TOPIC: ClassVar[str] = "RoleCreated"
        org_id: str
        name: str

    class Renamed(Aggregate.Event):
        TOPIC: ClassVar[str] = "RoleRenamed"
        name: str

    class Archived(Aggregate.Event):
        TOPIC: ClassVar[str] = "RoleArchived"

    @event(Created)
    def __init__(self, org_id: str, name: str) -> None:
        self._init(org_id, name)

    @event(Renamed)
    def _rename(self, name: str, timestamp: datetime.datetime | None = None) -> None:
        self._record_rename(name, timestamp)

    @event(Archived)
    def _archive(self, timestamp: datetime.datetime | None = None) -> None:
        self._record_archive(timestamp)


def group_id_for(project_id: uuid.UUID, role_id: uuid.UUID) -> uuid.UUID:
    """A pair has exactly one group, so its id is derived from the pair."""
    return uuid.uuid5(_GROUP_NAMESPACE, f"{project_id}:{role_id}")


class Group(Aggregate):
    """The group of one Project × Role pair. Linked while an identity provider pushes to it."""

    TOPIC: ClassVar[str] = "Group"

    class Created(Aggregate.Created):
        TOPIC: ClassVar[str] = "GroupCreated"
        org_id: str
        project_id: str
        role_id: str

    class Linked(Aggregate.Event):
        TOPIC: ClassVar[str] = "GroupLinked"

    class Unlinked(Aggregate.Event):
        """`cause`: "unlink" when the identity provider deleted the link, "archive" when the app retired the
        group's project or role."""

        TOPIC: ClassVar[str] = "GroupUnlinked"
        cause: UnlinkCause

    @staticmethod
    def create_id(org_id: str, project_id: str, role_id: str) -> uuid.UUID:
        return group_id_for(uuid.UUID(project_id), uuid.UUID(role_id))

    @event(Created)
    def __init__(self, org_id: str, project_id: str, role_id: str) -> None:
        self.org_id = org_id
        self.project_id = project_id
        self.role_id = role_id
        self.linked = False

    def link(self) -> None:
        if not self.linked:
            self._link()

    def unlink(self, cause: UnlinkCause) -> None:
        if self.linked:
            self._unlink(cause)

    @event(Linked)
    def _link(self) -> None:
        self.linked = True

    @event(Unlinked)
    def _unlink(self, cause: UnlinkCause) -> None:
        self.linked = False


EVENT_TYPES: tuple[type[Aggregate.Event], ...] = (
    Project.Created,
    Project.Renamed,
    Project.Archived,
    Role.Created,
    Role.Renamed,
    Role.Archived,
    Group.Created,
    Group.Linked,
    Group.Unlinked,
)
# Their stored type names (each class's explicit TOPIC), for readers that pick the catalog's events by type.
EVENT_TYPE_NAMES: tuple[str, ...] = tuple(event_type.TOPIC for event_type in EVENT_TYPES)  # type: ignore[attr-defined]
# The kind of entity each project or role event is about, by stored type name (a group's events are in none).
ENTITY_KIND_OF_EVENT: dict[str, EntityKind] = {
    event_type.TOPIC: entity.what
    for entity in (Project, Role)
    for event_type in (entity.Created, entity.Renamed, entity.Archived)
}
