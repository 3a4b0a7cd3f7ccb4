"""`scimledger`: serve the API and administer organizations, tokens and projections.

Every command uses the same database as `serve`: DATABASE_URL when set, else the embedded server in the
data dir. Only `migrate` and `serve` change its schema. Every other command first checks that the database
is migrated to exactly this code's migrations and refuses it otherwise, naming it, without creating
anything: pointed at the wrong database by mistake, a command leaves it as it found it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import msgspec

from app.bootstrap import Schema, bootstrap, locate_database
from app.cli import schema_commands as schema_cli
from app.cli.arguments import identifier, instant, seal_head
from app.cli.context import Context, Handler, admin
from app.cli.exits import ExitCode
from app.cli.output import (
    CLI_PAGE,
    add_format_option,
    pages_of,
    write_json_report,
    write_row_pages,
    write_rows,
)
from app.cli.user_commands import add_user_commands, resolve_user
from app.infrastructure import logs
from app.infrastructure.database import EmbeddedDatabaseError, database_location
from app.infrastructure.migrate import MigrationError, NewerSchema, NotMigrated
from app.infrastructure.settings import InvalidSetting, Settings
from app.services import catalog_repair, tenancy
from app.services.catalog import KINDS, CatalogService
from domain.errors import DomainError
from eventstore.runner import (
    Projection,
    Relocatable,
    rebuild,
    rebuild_beside,
    status,
)
from eventstore.store import ConcurrencyConflict
from projections import audit, audit_history, audit_state, seals

INLINE_PROJECTION = "scim"


class Tampered(Exception):
    """The log failed verification, so the command refused to act on it."""


def _print(*lines: Any) -> None:
    for line in lines:
        print(line)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: uvicorn and the HTTP edge would add about 55 ms to the 190 ms every other command takes
    # to import (measured on this project's 2-core machine), for nothing.
    from app.cli.server import serve

    host = args.host or settings.host
    port = args.port or settings.port
    print(
        f"scimledger: SCIM base URL http://{host}:{port}/scim/v2\n"
        "  To get a token: scimledger org create NAME, then scimledger token issue --org NAME",
        file=sys.stderr,
        flush=True,
    )
    if args.no_worker:
        settings = msgspec.structs.replace(settings, worker=False)
    return serve(settings, host, port)


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the asynchronous projections and reactors alone, until SIGTERM or SIGINT."""
    # Handled from the start: a supervisor may stop the worker while it is still starting, and that is a
    # clean stop too.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # Leaving the block stops the runner: a batch in flight rolls back; it is read again on the next start.
    async with bootstrap(settings, schema=Schema.REQUIRE_CURRENT, connections=4, runner=True) as root:
        if stopping.is_set():
            return ExitCode.OK
        assert root.runner is not None
        consumers = ", ".join(consumer.name for consumer in root.services.consumers)
        print(f"scimledger worker: running {consumers}", file=sys.stderr)
        stopped = asyncio.create_task(stopping.wait())
        await asyncio.wait([root.runner, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
    return ExitCode.OK


async def _db_url(settings: Settings, args: argparse.Namespace) -> int:
    """The connection URL in use, so that `psql "$(scimledger db url)"` works on the embedded server too. It
    reads no table, so any schema will do, even none; it creates no embedded cluster either."""
    _print(await locate_database(settings, create=False, keep_running=True))
    return ExitCode.OK


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with bootstrap(settings, schema=Schema.MIGRATE, connections=1) as root:
        applied = root.applied_migrations
    _print(
        *(f"applied {name}" for name in applied)
        if applied
        else [f"migrations are current in {database_location(settings)}"]
    )
    return ExitCode.OK


async def _org_create(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    org = await tenancy.create_org(connection, args.name)
    _print(f"created organization '{org.name}'", org.org_id)
    return 0


async def _org_list(context: Context, args: argparse.Namespace) -> int:
    rows = [{"id": org.org_id, "name": org.name} for org in await context.orgs()]
    write_rows(rows, args.format, ("id", "name"))
    return 0


async def _token_issue(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    org = await context.org(args.org)
    token_id, token = await tenancy.issue_token(connection, org.org_id, args.scope, args.label)
    # The token alone on stdout, so that TOKEN=$(scimledger token issue --org X) works; the rest to stderr.
    print(f"issued {args.scope} token {token_id} for '{org.name}'; it is shown only once", file=sys.stderr)
    _print(token)
    return 0


async def _token_list(context: Context, args: argparse.Namespace) -> int:
    connection = context.connection
    org = await context.org(args.org)
    rows = [
        {
            "id": info.token_id,
            "scope": info.scope,
            "state": "revoked" if info.revoked_at else "active",
            "created_at": info.created_at,
            "revoked_at": info.revoked_at,
            "label": info.label,
        }
        for info in await tenancy.list_tokens(connection, org.org_id)
    ]
    write_rows(rows, args.format, ("id", "scope", "state", "created_at", "revoked_at", "label"))
    return 0


async def _token_revoke(context: Context, args: argparse.Namespace) -> int:
    await tenancy.revoke_token(context.connection, args.token_id)
    _print(f"revoked token {args.token_id}")
    return 0


async def _catalog_create(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    kind = KINDS[args.command]
    entity_id, groups = await context.services.catalog.create(kind, org.org_id, args.name, admin())
    _print(f"created {kind.name} '{args.name}' and {groups} group(s)", entity_id)
    return 0


async def _catalog_rename(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    kind = KINDS[args.command]
    await context.services.catalog.rename(kind, org.org_id, args.reference, args.new_name, admin())
    _print(f"renamed {kind.name} '{args.reference}' to '{args.new_name}'")
    return 0


async def _catalog_archive(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    kind = KINDS[args.command]
    revoked = await context.services.catalog.archive(kind, org.org_id, args.reference, admin())
    _print(f"archived {kind.name} '{args.reference}'; {revoked} membership(s) revoked")
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


async def _group_repair(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    services = context.services
    done = await catalog_repair.repair(services.store, services.projection, org.org_id, admin())
    _print(
        f"created {done.created} missing group(s); retired {done.retired} group(s) of archived projects or "
        f"roles, revoking {done.revoked} membership(s); corrected the name of {done.renamed} group(s)"
    )
    return 0


async def _projections_rebuild(context: Context, args: argparse.Namespace) -> int:
    if args.name == seals.SEALER:
        return await _reseal(context)
    if args.name == INLINE_PROJECTION:
        # Writers project inline, so only a rebuild reads events no writer projected. One whose `tx` no
        # transaction committed was forged, and the runner will never seal it: it must grant nothing.
        forged = await seals.never_sealable(context.connection)
        if forged is not None:
            raise Tampered(
                f"refusing to rebuild {INLINE_PROJECTION} from a log that was tampered with: {forged}"
            )
        async with context.services.pool.acquire() as reader:
            replayed = await context.services.projection.rebuild(context.connection, reader)
    else:
        consumer = context.services.consumer(args.name)
        if isinstance(consumer, Relocatable):
            replayed = await rebuild_beside(context.connection, consumer)
        elif isinstance(consumer, Projection):
            replayed = await rebuild(context.connection, consumer)
        else:
            raise DomainError(
                f"'{args.name}' is a reactor: its decisions are events, and events are never redone."
            )
    _print(f"rebuilt {args.name} from {replayed} events")
    return ExitCode.OK


async def _reseal(context: Context) -> int:
    """`projections rebuild audit.seals`. The seals are evidence: dropping and recomputing them would seal
    an edited log as if it were the original. So the chain is verified as it stands, every seal is kept,
    and only what the runner has not sealed yet is sealed."""
    connection = context.connection
    forged = await seals.never_sealable(connection)
    if forged is not None:
        raise Tampered(f"refusing to seal a log that was tampered with: {forged}")
    orgs = await context.orgs()
    for org in orgs:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            verdict = await seals.verify(connection, org.org_id, max_unsealed_age=_max_unsealed_age(context))
        # Events left unsealed too long are not a reason to refuse: sealing them is the remedy.
        if verdict.tampered:
            raise Tampered(f"refusing to seal '{org.name}' over its existing seals: {verdict.problem}")
    sealed = await seals.seal_pending(connection)
    _print(
        f"verified the seals of {len(orgs)} organization(s) and kept them; sealed {sealed} pending event(s)"
    )
    return ExitCode.OK


def _max_unsealed_age(context: Context) -> datetime.timedelta:
    return datetime.timedelta(seconds=context.services.settings.audit_max_unsealed_seconds)


PROJECTION_STATUS_COLUMNS = (
    "name",
    "state",
    "position",
    "lag_events",
    "lag_seconds",
    "parked",
    "last_parked_error",
)


async def _projections_status(context: Context, args: argparse.Namespace) -> int:
    # The SCIM projection is written in the transaction of every change: never behind, nothing to run.
    inline = dict.fromkeys(PROJECTION_STATUS_COLUMNS) | {"name": INLINE_PROJECTION, "state": "inline"}
    rows = [inline] + [
        {
            "name": item.name,
            "state": "running" if item.running else "stopped",
            "position": item.position,
            "lag_events": item.lag_events,
            "lag_seconds": round(item.lag_seconds, 1),
            "parked": item.parked,
            "last_parked_error": item.last_parked_error,
        }
        for item in await status(context.connection, context.services.consumers)
    ]
    write_rows(rows, args.format, PROJECTION_STATUS_COLUMNS)
    return ExitCode.OK


async def _audit_head(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    latest = await seals.head(context.connection, org.org_id)
    if latest is None:
        raise DomainError(f"'{org.name}' has no sealed events yet.")
    _print(latest)
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
                connection, org.org_id, expected, max_unsealed_age=_max_unsealed_age(context)
            )
        if verdict.intact:
            pending = f"; {verdict.unsealed} newer event(s) not sealed yet" if verdict.unsealed else ""
            _print(f"{org.name}: intact, {verdict.checked} sealed event(s) verified{pending}")
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
ACCESS_COLUMNS = (
    "user_id",
    "userName",
    "group_id",
    "project",
    "role",
    "from",
    "to",
    "granted_by",
    "grant_cause",
    "revoked_by",
    "revoke_cause",
)
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
            yield [entry.to_row() for entry in page]

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
    write_rows([interval.to_row() for interval in intervals], args.format, ACCESS_COLUMNS)
    return ExitCode.OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scimledger", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the SCIM API (migrates first)")
    serve.add_argument("--host", help="interface to listen on (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run projections and reactors here (run 'worker' instead)",
    )
    serve.set_defaults(sync_handler=_serve)

    commands.add_parser("worker", help="run the asynchronous projections and reactors alone").set_defaults(
        handler=_worker
    )

    add_user_commands(commands)

    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(handler=_migrate)
    database = commands.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    database.add_parser("url", help="print the connection URL in use (for psql and BI tools)").set_defaults(
        handler=_db_url
    )

    org = commands.add_parser("org", help="organizations").add_subparsers(dest="org_command", required=True)
    org_create = org.add_parser("create", help="create an organization; prints its id on the last line")
    org_create.add_argument("name")
    org_create.set_defaults(db_handler=_org_create)
    org_list = org.add_parser("list", help="list organizations")
    add_format_option(org_list)
    org_list.set_defaults(db_handler=_org_list)

    schema_cli.add_commands(commands)

    token = commands.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    token_issue = token.add_parser("issue", help="issue a bearer token; prints it alone on stdout")
    token_issue.add_argument("--org", required=True, help="organization id or name")
    token_issue.add_argument("--scope", default="scim", choices=tenancy.SCOPES)
    token_issue.add_argument("--label", help="a note to tell tokens apart, e.g. 'okta-prod'")
    token_issue.set_defaults(db_handler=_token_issue)
    token_list = token.add_parser("list", help="list an organization's tokens (never their secrets)")
    token_list.add_argument("--org", required=True, help="organization id or name")
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
        create.add_argument("--org", required=True, help="organization id or name")
        create.add_argument("name")
        create.set_defaults(db_handler=_catalog_create)
        rename = catalog.add_parser("rename", help=f"rename a {kind.name}; its groups' displayName follows")
        rename.add_argument("--org", required=True, help="organization id or name")
        rename.add_argument("reference", metavar=kind.name.upper(), help=f"the {kind.name}'s id or name")
        rename.add_argument("new_name")
        rename.set_defaults(db_handler=_catalog_rename)
        archive = catalog.add_parser("archive", help=f"archive a {kind.name}: its groups leave SCIM")
        archive.add_argument("--org", required=True, help="organization id or name")
        archive.add_argument("reference", metavar=kind.name.upper(), help=f"the {kind.name}'s id or name")
        archive.set_defaults(db_handler=_catalog_archive)
        listing = catalog.add_parser("list", help=f"list the organization's {kind.name}s")
        listing.add_argument("--org", required=True, help="organization id or name")
        listing.add_argument("--all", action="store_true", help="include archived ones")
        add_format_option(listing)
        listing.set_defaults(db_handler=_catalog_list)

    group = commands.add_parser("group", help="Project × Role groups").add_subparsers(
        dest="group_command", required=True
    )
    group_list = group.add_parser("list", help="list groups, whether Okta linked them, and member counts")
    group_list.add_argument("--org", required=True, help="organization id or name")
    add_format_option(group_list)
    group_list.set_defaults(db_handler=_group_list)
    group_repair = group.add_parser(
        "repair", help="give live pairs their missing groups and retire groups of archived ones, as events"
    )
    group_repair.add_argument("--org", required=True, help="organization id or name")
    group_repair.set_defaults(db_handler=_group_repair)

    audit = commands.add_parser("audit", help="for auditors: tamper evidence").add_subparsers(
        dest="audit_command", required=True
    )
    audit_head = audit.add_parser(
        "head", help="print the latest seal of an org's chain, to keep outside the database"
    )
    audit_head.add_argument("--org", required=True, help="organization id or name")
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
    audit_history.add_argument("--org", required=True, help="organization id or name")
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
    audit_as_of.add_argument("--org", required=True, help="organization id or name")
    audit_as_of.add_argument("--at", type=instant, required=True, help="ISO 8601 time")
    audit_as_of.add_argument("--format", choices=("json", "csv"), default="json")
    audit_as_of.set_defaults(db_handler=_audit_as_of)
    audit_access = audit.add_parser(
        "access", help="who held which Project × Role in a window, granted by whom"
    )
    audit_access.add_argument("--org", required=True, help="organization id or name")
    audit_access.add_argument("--project", help="project id or name")
    audit_access.add_argument("--role", help="role id or name")
    audit_access.add_argument("--user", help="user id or userName")
    audit_access.add_argument("--from", dest="start", type=instant, required=True, help="ISO 8601 time")
    audit_access.add_argument("--to", dest="end", type=instant, required=True, help="ISO 8601 time")
    add_format_option(audit_access)
    audit_access.set_defaults(db_handler=_audit_access)

    projections = commands.add_parser("projections", help="read models").add_subparsers(
        dest="projections_command", required=True
    )
    rebuild_parser = projections.add_parser("rebuild", help="rebuild a projection from the event log alone")
    rebuild_parser.add_argument("name", help=f"'{INLINE_PROJECTION}', or an asynchronous projection's name")
    rebuild_parser.set_defaults(db_handler=_projections_rebuild)
    projections_status = projections.add_parser(
        "status", help="each projection's and reactor's position, lag and state"
    )
    add_format_option(projections_status)
    projections_status.set_defaults(db_handler=_projections_status)
    return parser


async def _with_services(settings: Settings, handler: Handler, args: argparse.Namespace) -> int:
    async with (
        bootstrap(settings, schema=Schema.REQUIRE_CURRENT, connections=2) as root,
        root.services.pool.acquire() as connection,
    ):
        return await handler(Context(root.services, connection, database_location(settings)), args)


def _stdout_closed() -> int:
    # Whatever is still buffered for stdout would fail again when the interpreter flushes it at exit, and
    # print a traceback: send it nowhere (the recipe of Python's documentation on SIGPIPE).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return ExitCode.STDOUT_CLOSED


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (see app.cli.exits). A bad command line exits USAGE in argparse."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except InvalidSetting as error:
        print(f"scimledger: {error}", file=sys.stderr)
        return ExitCode.USAGE
    # Administrative commands stay quiet unless something is wrong; `serve` and `worker` log at the configured
    # level, in the configured format.
    level = settings.log_level if args.command in ("serve", "worker") else "warning"
    logs.configure(level, settings.log_format)
    try:
        if hasattr(args, "sync_handler"):
            code = int(args.sync_handler(settings, args))
        elif hasattr(args, "db_handler"):
            code = int(asyncio.run(_with_services(settings, args.db_handler, args)))
        else:
            code = int(asyncio.run(args.handler(settings, args)))
        sys.stdout.flush()  # here rather than at exit, so that a reader that went away is noticed below
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except Tampered as error:
        print(f"scimledger: {error}", file=sys.stderr)
        return ExitCode.TAMPERED
    except NotMigrated as error:
        print(f"scimledger: {error}", file=sys.stderr)
        return ExitCode.NOT_MIGRATED
    except NewerSchema as error:
        print(f"scimledger: {error}", file=sys.stderr)
        return ExitCode.NEWER_SCHEMA
    # A concurrency conflict is refused as the HTTP edge refuses it (409): the same command may be run again.
    except (DomainError, ConcurrencyConflict, MigrationError) as error:
        print(f"scimledger: {error}", file=sys.stderr)
        return ExitCode.REFUSED
    except EmbeddedDatabaseError as error:  # the embedded server would not start: no database to reach
        print(f"scimledger: database error: {error}", file=sys.stderr)
        return ExitCode.DATABASE
    except (OSError, asyncpg.PostgresError) as error:
        print(f"scimledger: database error: {error}", file=sys.stderr)
        return ExitCode.DATABASE


if __name__ == "__main__":
    sys.exit(main())
