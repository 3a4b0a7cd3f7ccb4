"""`scimledger console link`: a one-time sign-in link to the console, for one of an organization's people
(the same service as the management API's `POST /api/v1/orgs/{org}/portal-links`)."""

from __future__ import annotations

import argparse
import sys

from app.cli.arguments import add_org_option
from app.cli.context import Context, admin
from app.cli.output import print_lines
from app.infrastructure.settings import Settings
from app.services.console import INTENTS


def service_root(settings: Settings) -> str:
    """Where people reach the service: SCIMLEDGER_PUBLIC_URL without its SCIM path, else HOST and PORT."""
    return settings.public_root or f"http://{settings.host}:{settings.port}"


async def _link(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    label = args.label or admin().actor.removeprefix("admin:")
    link = await context.services.console.issue_link(org.org_id, args.intent, label, admin().actor)
    print(
        f"a {args.intent} link to '{org.name}' for '{link.label}', usable once until "
        f"{link.expires_at.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    # The URL alone on stdout's last line, so that URL=$(scimledger console link ...) works.
    print_lines(service_root(context.services.settings) + link.path)
    return 0


async def _sign_out(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    revoked = await context.services.console.revoke_sessions(org.org_id)
    print_lines(f"signed out {revoked} console session(s) of '{org.name}'")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = commands.add_parser("console", help="the web console's sign-in links").add_subparsers(
        dest="console_command", required=True
    )
    link = console.add_parser("link", help="a one-time sign-in link to the console; prints the URL last")
    add_org_option(link)
    link.add_argument("--intent", choices=INTENTS, required=True, help="what the session may do")
    link.add_argument("--label", help="who the link is for, as history names them (default: your login)")
    link.set_defaults(db_handler=_link)
    sign_out = console.add_parser("sign-out", help="end every console session of the organization")
    add_org_option(sign_out)
    sign_out.set_defaults(db_handler=_sign_out)
