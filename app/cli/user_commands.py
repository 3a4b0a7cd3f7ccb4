"""`scimledger user …`: an org admin's view of the organization's users, and the two decisions the app makes
about them (remove and restore). Every command names its user by SCIM id or by userName, ignoring case as
SCIM does (scim/folding.py)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from app.cli.arguments import add_org_option
from app.cli.context import Context, admin
from app.cli.exits import ExitCode
from app.cli.output import CLI_PAGE, Row, add_format_option, write_row_pages, write_rows
from app.services import tenancy
from app.services.users import Invitation
from domain.errors import NotErasable, NotFound, moment
from projections import audit_history, user_directory
from projections.user_directory import UserFilter, UserSummary

# The history `user show` tells: the user's own stream, so the subject is always the user.
SHOW_HISTORY_COLUMNS = ("position", "recorded_at", "actor", "actor_label", "type", "change")


async def resolve_user(
    context: Context, org: tenancy.Org, reference: str, *, deleted: bool = False
) -> uuid.UUID:
    """The user the command line names, by id or userName, in `org`. `deleted`: an id names a user who was
    deleted too, for the commands that read the log (which keeps their history) rather than the directory
    (which no longer holds them)."""
    user_id = await user_directory.find_user(context.connection, org.org_id, reference)
    if user_id is None and deleted:
        with contextlib.suppress(ValueError):
            return uuid.UUID(reference)
    if user_id is None:
        raise NotFound(
            f"No user '{reference}' (by id or userName) in '{org.name}' in {context.where}; "
            f"'scimledger user list --org \"{org.name}\"' lists its users."
            + (" A deleted user is named by their id." if deleted else "")
        )
    return user_id


async def _org_and_user(context: Context, args: argparse.Namespace) -> tuple[tenancy.Org, uuid.UUID]:
    """The `--org ORG USER` every user command but `list` takes."""
    org = await context.org(args.org)
    return org, await resolve_user(context, org, args.user)


async def _user_list(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    wanted = UserFilter(active=args.active, removed=True if args.removed else None)

    async def rows() -> AsyncIterator[list[Row]]:
        async for page in user_directory.users(context.connection, org.org_id, wanted, CLI_PAGE):
            yield [user.to_row() for user in page]

    await write_row_pages(rows(), args.format, user_directory.USER_COLUMNS)
    return ExitCode.OK


def _removal(user: UserSummary, org: tenancy.Org) -> str:
    if user.member:
        return "no"
    assert user.removed_at is not None
    when = user.removed_at.isoformat(sep=" ", timespec="seconds")
    if user.removed_by_admin:
        return (
            f"yes, by an org admin in the app ({user.removed_by}) on {when}; Okta's profile pushes do not bring "
            f"them back, 'scimledger user restore --org \"{org.name}\" {user.user_id}' does"
        )
    return f"yes, on {when} by {user.removed_by} (cause: {user.removed_cause})"


async def _user_show(context: Context, args: argparse.Namespace) -> int:
    org, user_id = await _org_and_user(context, args)
    detail = await user_directory.user_detail(context.connection, org.org_id, user_id)
    if detail is None:  # deleted between the two reads
        raise NotFound(f"No user '{args.user}' in '{org.name}' in {context.where}.")
    history = await audit_history.recent(
        context.connection, org.org_id, context.services.settings.group_prefix, user_id, args.history
    )
    labels = await tenancy.actor_labels(context.connection, org.org_id, {entry.actor for entry in history})
    profile = {key: value for key, value in detail.resource.items() if key != "groups"}
    if args.format == "json":
        document = {
            **detail.summary.to_row(),
            "removed_by_admin": detail.summary.removed_by_admin,
            "profile": profile,
            "groups": [group.to_row() for group in detail.groups],
            "history": [entry.to_row(labels) for entry in history],
        }
        print(msgspec.json.format(msgspec.json.encode(document)).decode())
        return ExitCode.OK
    summary = detail.summary
    fields = {
        "id": str(summary.user_id),
        "userName": summary.user_name,
        "displayName": summary.display_name or "",
        "active": "yes" if summary.active else "no",
        "member": "yes" if summary.member else "no",
        "removed": _removal(summary, org),
    }
    width = max(map(len, fields))
    for key, value in fields.items():
        print(f"{key.ljust(width)}  {value}")
    print("\nprofile (SCIM)")
    print(msgspec.json.format(msgspec.json.encode(profile)).decode())
    print("\ngroups (project × role)")
    write_rows([group.to_row() for group in detail.groups], "table", user_directory.GROUP_COLUMNS)
    print(f"\nrecent history (last {len(history)} event(s), oldest first)")
    write_rows([entry.to_row(labels) for entry in history], "table", SHOW_HISTORY_COLUMNS)
    return ExitCode.OK


async def _user_remove(context: Context, args: argparse.Namespace) -> int:
    org, user_id = await _org_and_user(context, args)
    earlier = await context.services.users.remove_from_organization(org.org_id, user_id, admin())
    if earlier is None:
        print(
            f"removed user {user_id} from '{org.name}'; their access is revoked and Okta will see them inactive"
        )
        return ExitCode.OK
    # Only a deactivation takes a user who is not deleted out of the organization without an admin.
    because = (
        "their identity provider deactivated them" if earlier.cause == "okta_deactivation" else earlier.cause
    )
    print(
        f"user {user_id} had already left '{org.name}' on {moment(earlier.on)} ({because}); their removal in "
        "the app is now recorded too, so a profile push no longer brings them back: only a reactivation in "
        "the identity provider or 'scimledger user restore' does"
    )
    return ExitCode.OK


async def _user_restore(context: Context, args: argparse.Namespace) -> int:
    org, user_id = await _org_and_user(context, args)
    await context.services.users.restore(org.org_id, user_id, admin())
    print(
        f"restored user {user_id} in '{org.name}': a member and active again; Okta sees them active at its next "
        "import, and pushes their groups again when it assigns them"
    )
    return ExitCode.OK


# What an admin types to confirm an erasure, when they did not pass --yes.
ERASE_CONFIRMATION = "erase"


async def _user_erase(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    user_id = await resolve_user(context, org, args.user, deleted=True)
    if not args.yes:
        print(
            f"Erase the personal data of user {user_id} in '{org.name}' for ever? Their data key is destroyed: "
            "their name, userName and e-mail addresses can never be read again, in any history, export or "
            f"backup of the log taken from now on. Type '{ERASE_CONFIRMATION}' to confirm: ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        answer = sys.stdin.readline().strip()
        if answer != ERASE_CONFIRMATION:
            raise NotErasable(
                f"Not confirmed (expected '{ERASE_CONFIRMATION}'): nothing was erased. --yes skips the question."
            )
    erasure = await context.services.erasure.erase(org.org_id, user_id, args.reason, admin())
    print(
        f"erased the personal data of user {user_id} in '{org.name}' at {erasure.erased_at.isoformat()} "
        f'(reason: {erasure.reason}); their history shows "[erased]" in its place, and their userName is free'
    )
    return ExitCode.OK


async def _user_invite(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    invitation = Invitation(
        args.user_name, args.email, args.given_name, args.family_name, args.display_name, args.external_id
    )
    services = context.services
    row = await services.users.invite(
        org.org_id, invitation, admin(), services.settings.max_identifier_length
    )
    print(f"invited user '{args.user_name}' to '{org.name}'; the identity provider's import will match them")
    print(row.user_id)
    return ExitCode.OK


def _history_count(text: str) -> int:
    count = int(text)
    if not 0 <= count <= 1000:
        raise argparse.ArgumentTypeError("takes 0 to 1000 events")
    return count


def add_user_commands(commands: Any) -> None:
    """`scimledger user …`, on the CLI's subcommands."""
    user = commands.add_parser("user", help="users, as an org admin sees them").add_subparsers(
        dest="user_command", required=True
    )
    listing = user.add_parser(
        "list", help="the organization's users, their state and how many groups they hold"
    )
    add_org_option(listing)
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_const", const=True, help="only active users")
    state.add_argument(
        "--inactive", dest="active", action="store_const", const=False, help="only inactive users"
    )
    listing.add_argument(
        "--removed",
        action="store_true",
        help="only users removed from the organization (by an org admin, or after their deactivation)",
    )
    add_format_option(listing)
    listing.set_defaults(db_handler=_user_list)

    show = user.add_parser("show", help="a user's profile, state, groups and recent history")
    add_org_option(show)
    show.add_argument("user", metavar="USER", help="the user's SCIM id or userName")
    show.add_argument(
        "--history", type=_history_count, default=10, metavar="N", help="how many recent events (default 10)"
    )
    show.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    show.set_defaults(db_handler=_user_show)

    invite = user.add_parser(
        "invite",
        help="record a user from the app, for the identity provider's import to match; prints the id",
    )
    add_org_option(invite)
    invite.add_argument("user_name", metavar="USERNAME", help="the userName the identity provider will match")
    for option, what in (
        ("--email", "their work e-mail address"),
        ("--given-name", "their given name"),
        ("--family-name", "their family name"),
        ("--display-name", "their display name"),
        ("--external-id", "the identity provider's id for them, if known"),
    ):
        invite.add_argument(option, help=what)
    invite.set_defaults(db_handler=_user_invite)

    erase = user.add_parser(
        "erase",
        help="erase the personal data of a user deleted or removed from the organization, for ever",
        description="Destroys the user's data key and records who asked, when and why; the log and its seals "
        'stay intact, and every history shows "[erased]" in place of their data. Only for a user the '
        "identity provider deleted or who was removed from the organization.",
    )
    add_org_option(erase)
    erase.add_argument("user", metavar="USER", help="the user's SCIM id, or userName while they are listed")
    erase.add_argument(
        "--reason",
        required=True,
        help="why, as the log keeps it for the auditors (a ticket number, the request's date); never the "
        "person's own name or e-mail address, which would stay in the log for ever",
    )
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    erase.set_defaults(db_handler=_user_erase)

    for name, text, handler in (
        ("remove", "remove a user from the organization (Okta then unassigns)", _user_remove),
        ("restore", "undo an org admin's removal of a user", _user_restore),
    ):
        command = user.add_parser(name, help=text)
        add_org_option(command)
        command.add_argument("user", metavar="USER", help="the user's SCIM id or userName")
        command.set_defaults(db_handler=handler)
