"""`scimledger org|token|project|role|group …`: an org admin's organizations, tokens and catalog."""

from __future__ import annotations

import argparse
import sys

from app.cli.arguments import add_org_option, identifier
from app.cli.context import Context, admin
from app.cli.output import add_format_option, print_lines, write_rows
from app.cli.user_commands import resolve_user
from app.services import catalog_repair, retention, tenancy
from app.services.catalog import KINDS, CatalogService
from domain.errors import DomainError


async def _org_create(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    org = await tenancy.create_org(connection, args.name)
    print_lines(f"created organization '{org.name}'", org.org_id)
    return 0


async def _org_list(context: Context, args: argparse.Namespace) -> int:
    rows = [{"id": org.org_id, "name": org.name} for org in await context.orgs()]
    write_rows(rows, args.format, ("id", "name"))
    return 0


async def _org_retention(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    if args.days is None and not args.off:
        policy = await retention.policy_of(context.connection, org.org_id)
        print(f"retention of personal data in '{org.name}': {policy.described()}")
        return 0
    policy = await retention.set_policy(
        context.connection, org.org_id, retention.RetentionPolicy(None if args.off else args.days)
    )
    print(f"retention of personal data in '{org.name}' is now {policy.described()}")
    return 0


def _retention_days(text: str) -> int:
    days = int(text)
    if not 1 <= days <= retention.MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(f"takes 1 to {retention.MAX_RETENTION_DAYS} days")
    return days


async def _token_issue(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    if args.org is None and args.scope != tenancy.PLATFORM:
        raise DomainError(f"A {args.scope} token belongs to one organization: name it with --org.")
    if args.org is not None and args.scope == tenancy.PLATFORM:
        raise DomainError("A platform token belongs to no organization: issue it without --org.")
    org = await context.org(args.org) if args.org is not None else None
    token_id, token = await tenancy.issue_token(
        connection, org.org_id if org else None, args.scope, args.label, admin().actor
    )
    owner = f"for '{org.name}'" if org else "for the platform (every organization)"
    # The token alone on stdout, so that TOKEN=$(scimledger token issue --org X) works; the rest to stderr.
    print(f"issued {args.scope} token {token_id} {owner}; it is shown only once", file=sys.stderr)
    print_lines(token)
    return 0


async def _token_list(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    org = await context.org(args.org) if args.org is not None else None
    rows = [
        {
            "id": info.token_id,
            "scope": info.scope,
            "state": "revoked" if info.revoked_at else "active",
            "created_at": info.created_at,
            "last_used_at": info.last_used_at,
            "revoked_at": info.revoked_at,
            "label": info.label,
        }
        for info in await tenancy.list_tokens(connection, org.org_id if org else None)
    ]
    write_rows(
        rows, args.format, ("id", "scope", "state", "created_at", "last_used_at", "revoked_at", "label")
    )
    return 0


async def _token_revoke(context: Context, args: argparse.Namespace) -> int:
    await tenancy.revoke_token(context.connection, args.token_id, revoked_by=admin().actor)
    print_lines(f"revoked token {args.token_id}")
    return 0


async def _catalog_create(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    kind = KINDS[args.command]
    entity_id, groups = await context.services.catalog.create(kind, org.org_id, args.name, admin())
    print_lines(f"created {kind.name} '{args.name}' and {groups} group(s)", entity_id)
    return 0


async def _catalog_rename(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    kind = KINDS[args.command]
    await context.services.catalog.rename(kind, org.org_id, args.reference, args.new_name, admin())
    print_lines(f"renamed {kind.name} '{args.reference}' to '{args.new_name}'")
    return 0


async def _catalog_archive(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    kind = KINDS[args.command]
    revoked = await context.services.catalog.archive(kind, org.org_id, args.reference, admin())
    print_lines(f"archived {kind.name} '{args.reference}'; {revoked} membership(s) revoked")
    return 0


async def _catalog_list(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    entries = await CatalogService.entries(context.connection, KINDS[args.command], org.org_id, args.all)
    rows = [{"id": entry.id, "name": entry.name, "archived": entry.archived} for entry in entries]
    write_rows(rows, args.format, ("id", "name", "archived"))
    return 0


async def _group_list(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    rows = [
        {
            "id": group.group_id,
            "displayName": group.display_name,
            "linked": group.linked,
            "members": group.members,
        }
        for group in await CatalogService.groups(context.connection, org.org_id)
    ]
    write_rows(rows, args.format, ("id", "displayName", "linked", "members"))
    return 0


async def _group_members(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    members = await CatalogService.members(context.connection, org.org_id, args.group_id)
    rows = [
        {"user_id": member.user_id, "userName": member.user_name, "since": member.since} for member in members
    ]
    write_rows(rows, args.format, ("user_id", "userName", "since"))
    return 0


async def _group_grant(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    user_id = await resolve_user(context, org, args.user)
    member = args.group_command == "add-member"
    changed = await context.services.groups.grant(org.org_id, args.group_id, user_id, member, admin())
    done = (
        ("added" if member else "removed") if changed else ("already a member" if member else "not a member")
    )
    print_lines(f"user {user_id} {done} in group {args.group_id}")
    return 0


async def _group_repair(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    services = context.services
    done = await catalog_repair.repair(services.store, services.projection, org.org_id, admin())
    print_lines(
        f"created {done.created} missing group(s); retired {done.retired} group(s) of archived projects or "
        f"roles, revoking {done.revoked} membership(s); corrected the name of {done.renamed} group(s)"
    )
    return 0


def add_org_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`org create|list`."""
    org = commands.add_parser("org", help="organizations").add_subparsers(dest="org_command", required=True)
    org_create = org.add_parser("create", help="create an organization; prints its id on the last line")
    org_create.add_argument("name")
    org_create.set_defaults(db_handler=_org_create)
    org_list = org.add_parser("list", help="list organizations")
    add_format_option(org_list)
    org_list.set_defaults(db_handler=_org_list)
    org_retention = org.add_parser(
        "retention",
        help="show or set how many days after deletion or removal a user's personal data is erased",
        description="Without an option, shows the policy. Off by default: personal data is then kept until an "
        "admin erases it ('scimledger user erase'). With one, the runner erases each user whose time is up, "
        "recorded as an erasure by 'retention'.",
    )
    add_org_option(org_retention)
    choice = org_retention.add_mutually_exclusive_group()
    choice.add_argument("--days", type=_retention_days, metavar="N", help="erase N days after they left")
    choice.add_argument("--off", action="store_true", help="keep personal data until an admin erases it")
    org_retention.set_defaults(db_handler=_org_retention)


def add_access_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`token …`, the catalog's `project …` and `role …`, and `group list|repair`."""
    token = commands.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    token_issue = token.add_parser("issue", help="issue a bearer token; prints it alone on stdout")
    token_issue.add_argument("--org", help="organization id or name; none for a platform token")
    token_issue.add_argument("--scope", default="scim", choices=tenancy.SCOPES)
    token_issue.add_argument("--label", help="a note to tell tokens apart, e.g. 'okta-prod'")
    token_issue.set_defaults(db_handler=_token_issue)
    token_list = token.add_parser(
        "list", help="list an organization's tokens, or without --org the platform's (never their secrets)"
    )
    token_list.add_argument("--org", help="organization id or name; none for the platform tokens")
    add_format_option(token_list)
    token_list.set_defaults(db_handler=_token_list)
    token_revoke = token.add_parser("revoke", help="revoke a token by its id")
    token_revoke.add_argument(
        "token_id", type=identifier("a token id (see 'scimledger token list --org ORG')")
    )
    token_revoke.set_defaults(db_handler=_token_revoke)

    for kind in KINDS.values():
        catalog = commands.add_parser(kind.name, help=f"the app's {kind.name}s").add_subparsers(
            dest=f"{kind.name}_command", required=True
        )
        create = catalog.add_parser("create", help=f"create a {kind.name} and its groups; prints its id last")
        add_org_option(create)
        create.add_argument("name")
        create.set_defaults(db_handler=_catalog_create)
        rename = catalog.add_parser("rename", help=f"rename a {kind.name}; its groups' displayName follows")
        add_org_option(rename)
        rename.add_argument("reference", metavar=kind.name.upper(), help=f"the {kind.name}'s id or name")
        rename.add_argument("new_name")
        rename.set_defaults(db_handler=_catalog_rename)
        archive = catalog.add_parser("archive", help=f"archive a {kind.name}: its groups leave SCIM")
        add_org_option(archive)
        archive.add_argument("reference", metavar=kind.name.upper(), help=f"the {kind.name}'s id or name")
        archive.set_defaults(db_handler=_catalog_archive)
        listing = catalog.add_parser("list", help=f"list the organization's {kind.name}s")
        add_org_option(listing)
        listing.add_argument("--all", action="store_true", help="include archived ones")
        add_format_option(listing)
        listing.set_defaults(db_handler=_catalog_list)

    group = commands.add_parser("group", help="Project × Role groups").add_subparsers(
        dest="group_command", required=True
    )
    group_list = group.add_parser("list", help="list groups, whether Okta linked them, and member counts")
    add_org_option(group_list)
    add_format_option(group_list)
    group_list.set_defaults(db_handler=_group_list)
    group_members = group.add_parser("members", help="a group's members, in the order they joined")
    add_org_option(group_members)
    group_members.add_argument("group_id", type=identifier("a group id (see 'scimledger group list')"))
    add_format_option(group_members)
    group_members.set_defaults(db_handler=_group_members)
    for name, text in (
        ("add-member", "grant in the app: add a member to a group the identity provider has not linked"),
        (
            "remove-member",
            "revoke in the app: remove a member of a group the identity provider has not linked",
        ),
    ):
        grant = group.add_parser(name, help=text)
        add_org_option(grant)
        grant.add_argument("group_id", type=identifier("a group id (see 'scimledger group list')"))
        grant.add_argument("user", metavar="USER", help="the user's SCIM id or userName")
        grant.set_defaults(db_handler=_group_grant)
    group_repair = group.add_parser(
        "repair", help="give live pairs their missing groups and retire groups of archived ones, as events"
    )
    add_org_option(group_repair)
    group_repair.set_defaults(db_handler=_group_repair)
