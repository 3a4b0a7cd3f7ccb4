"""`scimledger audit head|verify|history|as-of|access`: for auditors, tamper evidence and the log's answers
(`audit export|key|verify-bundle`, evidence bundles, are in evidence_commands)."""

from __future__ import annotations

import argparse
import datetime
import itertools
import sys
from collections.abc import AsyncIterator
from typing import Any

from app.cli import evidence_commands
from app.cli.arguments import add_org_option, identifier, instant, seal_head
from app.cli.context import Context
from app.cli.exits import ExitCode
from app.cli.operations_commands import max_unsealed_age
from app.cli.output import (
    CLI_PAGE,
    add_format_option,
    pages_of,
    print_lines,
    write_json_report,
    write_row_pages,
    write_rows,
)
from app.cli.user_commands import resolve_user
from app.services import tenancy
from domain.errors import DomainError
from projections import audit, audit_history, audit_state, seals


async def _audit_head(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    latest = await seals.head(context.connection, org.org_id)
    if latest is None:
        raise DomainError(f"'{org.name}' has no sealed events yet.")
    print_lines(latest)
    return ExitCode.OK


async def _audit_verify(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    orgs = [await context.org(args.org)] if args.org else await context.orgs()
    expected: seals.Head | None = args.head
    if expected is not None and len(orgs) != 1:
        raise DomainError("--head applies to one organization: give --org too.")
    broken = 0
    if not args.org:
        # Every organization's events, known organizations' or not.
        forged = await seals.never_sealable(connection)
        if forged is not None:
            broken += 1
            print(f"the log: TAMPERED: {forged}", file=sys.stderr)
    for org in orgs:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            verdict = await seals.verify(
                connection, org.org_id, expected, max_unsealed_age=max_unsealed_age(context)
            )
        if verdict.intact:
            pending = f"; {verdict.unsealed} newer event(s) not sealed yet" if verdict.unsealed else ""
            print_lines(f"{org.name}: intact, {verdict.checked} sealed event(s) verified{pending}")
        else:
            broken += 1
            label = "TAMPERED" if verdict.tampered else "NOT VERIFIED"
            print(f"{org.name}: {label}: {verdict.problem}", file=sys.stderr)
    return ExitCode.TAMPERED if broken else ExitCode.OK


def _window(start: datetime.datetime | None, end: datetime.datetime | None, first: str, second: str) -> None:
    problem = audit.window_error(start, end, first, second)
    if problem is not None:
        raise DomainError(problem)


# The columns of each tabular answer, so that a CSV or a table has its header even when it has no rows.
HISTORY_COLUMNS = audit_history.COLUMNS
ACCESS_COLUMNS = audit.REVIEW_COLUMNS
AS_OF_COLUMNS = ("kind", "id", "name", "active", "member", "group")


async def _audit_history(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    _window(args.since, args.until, "--since", "--until")
    user = None if args.user is None else await resolve_user(context, org, args.user, deleted=True)
    wanted = audit_history.HistoryFilter(
        user=user,
        group=args.group,
        actor=args.actor,
        since=args.since,
        until=args.until,
    )
    pages = audit_history.history(
        context.connection, org.org_id, context.services.settings.group_prefix, wanted, CLI_PAGE
    )

    async def rows() -> AsyncIterator[list[dict[str, Any]]]:
        async for page in pages:
            actors = {entry.actor for entry in page}
            labels = await tenancy.actor_labels(context.connection, org.org_id, actors)
            yield [entry.to_row(labels) for entry in page]

    await write_row_pages(rows(), args.format, HISTORY_COLUMNS)
    return ExitCode.OK


async def _audit_as_of(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    state = await audit_state.state_at(
        context.connection, org.org_id, args.at, context.services.settings.group_prefix
    )
    if args.format == "json":
        write_json_report(
            [
                ("users", state.user_rows()),
                ("groups", state.group_rows()),
                ("memberships", state.membership_rows()),
            ]
        )
        return ExitCode.OK
    users = (
        {
            "kind": "user",
            "id": user["id"],
            "name": user["userName"],
            "active": user["active"],
            "member": user["member"],
            "group": "",
        }
        for user in state.user_rows()
    )
    groups = (
        {
            "kind": "group",
            "id": group["id"],
            "name": group["displayName"],
            "active": "",
            "member": "",
            "group": "",
        }
        for group in state.group_rows()
    )
    memberships = (
        {
            "kind": "membership",
            "id": membership["user"],
            "name": membership["userName"],
            "active": "",
            "member": "",
            "group": membership["displayName"],
        }
        for membership in state.membership_rows()
    )
    await write_row_pages(pages_of(itertools.chain(users, groups, memberships)), "csv", AS_OF_COLUMNS)
    return ExitCode.OK


async def _audit_access(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    _window(args.start, args.end, "--from", "--to")
    async with context.connection.transaction(isolation="repeatable_read", readonly=True):
        intervals = await audit.access(
            context.connection,
            org.org_id,
            context.services.settings.group_prefix,
            args.start,
            args.end,
            project=args.project,
            role=args.role,
            user=args.user,
        )
        labels = await tenancy.actor_labels(context.connection, org.org_id, audit.actors_of(intervals))
    write_rows([interval.to_row(labels) for interval in intervals], args.format, ACCESS_COLUMNS)
    return ExitCode.OK


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`audit …`."""
    audit = commands.add_parser("audit", help="for auditors: tamper evidence").add_subparsers(
        dest="audit_command", required=True
    )
    audit_head = audit.add_parser(
        "head", help="print the latest seal of an org's chain, to keep outside the database"
    )
    add_org_option(audit_head)
    audit_head.set_defaults(db_handler=_audit_head)
    audit_verify = audit.add_parser(
        "verify", help="recompute the seal chain; exit 3 naming the first event tampered with"
    )
    audit_verify.add_argument("--org", help="organization id or name (default: every organization)")
    audit_verify.add_argument(
        "--head", type=seal_head, help="a head printed by 'audit head': also proves nothing was cut off"
    )
    audit_verify.set_defaults(db_handler=_audit_verify)
    audit_history = audit.add_parser("history", help="the org's events in order, with the change in words")
    add_org_option(audit_history)
    about = audit_history.add_mutually_exclusive_group()
    about.add_argument("--user", help="only events about this user (id or userName; a deleted user by id)")
    about.add_argument(
        "--group",
        type=identifier("a group id"),
        help="only events about this group (id), memberships included",
    )
    about.add_argument(
        "--actor", help="only events caused by this token id, or 'admin:<login>', 'reactor:<name>'"
    )
    audit_history.add_argument("--since", type=instant, help="from this ISO 8601 time on")
    audit_history.add_argument("--until", type=instant, help="up to this ISO 8601 time")
    add_format_option(audit_history)
    audit_history.set_defaults(db_handler=_audit_history)
    audit_as_of = audit.add_parser(
        "as-of", help="users, groups and memberships at an instant, replayed from the log"
    )
    add_org_option(audit_as_of)
    audit_as_of.add_argument("--at", type=instant, required=True, help="ISO 8601 time")
    audit_as_of.add_argument("--format", choices=("json", "csv"), default="json")
    audit_as_of.set_defaults(db_handler=_audit_as_of)
    audit_access = audit.add_parser(
        "access", help="who held which Project × Role in a window, granted by whom"
    )
    add_org_option(audit_access)
    audit_access.add_argument("--project", help="project id or name")
    audit_access.add_argument("--role", help="role id or name")
    audit_access.add_argument("--user", help="user id or userName")
    audit_access.add_argument("--from", dest="start", type=instant, required=True, help="ISO 8601 time")
    audit_access.add_argument("--to", dest="end", type=instant, required=True, help="ISO 8601 time")
    add_format_option(audit_access)
    audit_access.set_defaults(db_handler=_audit_access)
    evidence_commands.add_commands(audit)
