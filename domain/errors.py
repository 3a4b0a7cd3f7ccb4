"""Every refusal of the domain and the services, in one module; the HTTP edge translates them to SCIM errors
by one table (`app.http.errors.DOMAIN_ERROR_ANSWERS`), the CLI to messages. The store's own errors (a
concurrency conflict) live in the store: they are not the domain's refusals."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.users import User


class DomainError(Exception):
    """A command the domain refuses."""


class NotFound(DomainError):
    """The thing named does not exist in this organization (or no longer does)."""


class UserNameTaken(DomainError):
    def __init__(self, user_name: str) -> None:
        super().__init__(f"A user with userName '{user_name}' already exists in this organization.")
        self.user_name = user_name


class UserDeletedError(DomainError):
    """The user was deleted; deleted users accept no further commands."""


class NotErasable(DomainError):
    """A person's data that may not be erased (yet): they are still a member, or were erased already, or the
    reason given would itself keep their data; the message says which and what to do."""


class NameTaken(DomainError):
    """A project or role would take the name of another of the organization."""


class GroupNameTaken(NameTaken):
    """A change would give a group the name of another group of the organization. The statement that hit the
    unique index cannot say which group; the catalog service finds it (`holder_of_name`) and says so."""


class OrgNameTaken(DomainError):
    pass


class ManagedByIdentityProvider(DomainError):
    """The identity provider linked the group, so its membership is the identity provider's to change."""


class TooManyTokens(DomainError):
    """An organization already holds as many active tokens of a scope as it may."""


class ArchivedError(DomainError):
    """An archived project or role accepts no further changes."""


class IncompatibleRedeclaration(DomainError):
    """A redeclaration that stored values or the identity provider's routine writes could not satisfy."""


class InvalidFeedRequest(DomainError):
    """A read of the event feed the service cannot answer: a cursor it did not hand out, an unknown event type,
    a limit or a wait out of range; the message says which, for the integrator to fix their call."""


class PreconditionFailed(DomainError):
    """The client pinned a version with If-Match and the resource has moved past it."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"The resource is now at version {current_version}.")
        self.current_version = current_version


class InactiveMember(DomainError):
    """A user who may not be given access, named and with the reason, as `User.access_refusal` words it."""

    def __init__(self, user: User, refusal: str) -> None:
        super().__init__(f"User {user.described()} {refusal}, so they cannot be added to a group.")
        self.user_id = user.id
        self.refusal = refusal


# A refusal names this many members; of the rest it gives the count, so that a resync of thousands of
# deactivated users still gets a detail an admin can read (and Okta can show).
MAX_NAMED_MEMBERS = 20


class InvalidMember(DomainError):
    """The members a request may not add, each named with the reason; nothing of the request is applied."""

    def __init__(self, refusals: Sequence[str], unknown: Sequence[str] = ()) -> None:
        named = "; ".join(refusals[:MAX_NAMED_MEMBERS])
        more = len(refusals) - MAX_NAMED_MEMBERS
        count = "1 member" if len(refusals) == 1 else f"{len(refusals)} members"
        super().__init__(
            f"{count} of this request cannot be added to the group, so nothing in the request was applied: "
            f"{named}{f'; and {more} more' if more > 0 else ''}."
        )
        self.refusals = list(refusals)
        # The members, as the request sent them, that name no user of the organization.
        self.unknown = list(unknown)


class InvalidWebhook(DomainError):
    """A webhook endpoint's fields that cannot be saved; the message says which and why."""


class InvalidWebhookUrl(InvalidWebhook):
    """A webhook URL that cannot be used (not https, a private address, …); the message says why."""


class WebhookKeyMissing(DomainError):
    """No key to encrypt or decrypt webhook signing secrets with: a setting of the service, not the caller's
    mistake. The message names the setting."""


class PersonalDataKeyMissing(DomainError):
    """No key-encryption key for personal data (SCIMLEDGER_PERSONAL_DATA_KEYS), or none of the configured ones
    unwraps a stored data key: a setting of the service, not the caller's mistake. The message names it."""


class SigningKeyMissing(DomainError):
    """No usable key to sign evidence bundles with: a setting of the service, not the caller's mistake. The
    message names the setting."""


class LogNotIntact(DomainError):
    """The log fails its seal chain, so no evidence is exported from it; the message names the first break."""


class LinkRefused(DomainError):
    """A console sign-in link that cannot be used, with what to do about it (the page shown says it).
    `gone`: it was a link, used or expired (410); otherwise there is no such link (404)."""

    def __init__(self, detail: str, gone: bool = False) -> None:
        super().__init__(detail)
        self.gone = gone


def moment(when: datetime.datetime) -> str:
    """A time as an admin reads it in an error: to the minute, in UTC, whatever zone it was recorded in."""
    return f"{when.astimezone(datetime.UTC):%Y-%m-%d %H:%M} UTC"
