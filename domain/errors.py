"""One error hierarchy for the domain; the HTTP edge translates it to SCIM errors, the CLI to messages."""

from __future__ import annotations

import datetime


class DomainError(Exception):
    """A command the domain refuses."""


class NotFound(DomainError):
    """The thing named does not exist in this organization (or no longer does)."""


class UserNameTaken(DomainError):
    def __init__(self, user_name: str) -> None:
        super().__init__(f"A user with userName '{user_name}' already exists in this organization.")
        self.user_name = user_name


class ConcurrencyConflict(DomainError):
    """Another writer appended to the stream first; the command may be retried on fresh state."""

    def __init__(
        self, stream_id: object = None, expected_version: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(
            reason or f"Stream {stream_id} moved past version {expected_version} before this write committed."
        )
        self.stream_id = stream_id
        self.expected_version = expected_version


class UserDeletedError(DomainError):
    """The user was deleted; deleted users accept no further commands."""


def moment(when: datetime.datetime) -> str:
    """A time as an admin reads it in an error: to the minute, in UTC, whatever zone it was recorded in."""
    return f"{when.astimezone(datetime.UTC):%Y-%m-%d %H:%M} UTC"
