"""`scimledger serve|worker|migrate|db url|projections …`: run the service, and operate its database and
read models."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
import sys

import msgspec

from app.bootstrap import Schema, bootstrap, locate_database
from app.cli.context import Context
from app.cli.exits import ExitCode, Tampered
from app.cli.output import add_format_option, print_lines, write_rows
from app.infrastructure.database import database_location
from app.infrastructure.settings import Settings
from domain.errors import DomainError
from eventstore.consumers import Projection, Relocatable
from eventstore.positions import status
from eventstore.rebuilds import rebuild, rebuild_beside
from projections import seals

INLINE_PROJECTION = "scim"


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
    return serve(settings, host, port, args.workers)


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
    print_lines(await locate_database(settings, create=False, keep_running=True))
    return ExitCode.OK


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with bootstrap(settings, schema=Schema.MIGRATE, connections=1) as root:
        applied = root.applied_migrations
    print_lines(
        *(f"applied {name}" for name in applied)
        if applied
        else [f"migrations are current in {database_location(settings)}"]
    )
    return ExitCode.OK


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
    print_lines(f"rebuilt {args.name} from {replayed} events")
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
            verdict = await seals.verify(connection, org.org_id, max_unsealed_age=max_unsealed_age(context))
        # Events left unsealed too long are not a reason to refuse: sealing them is the remedy.
        if verdict.tampered:
            raise Tampered(f"refusing to seal '{org.name}' over its existing seals: {verdict.problem}")
    sealed = await seals.seal_pending(connection)
    print_lines(
        f"verified the seals of {len(orgs)} organization(s) and kept them; sealed {sealed} pending event(s)"
    )
    return ExitCode.OK


def max_unsealed_age(context: Context) -> datetime.timedelta:
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


def _process_count(text: str) -> int:
    count = int(text) if text.isdigit() else 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, 1 or more, got '{text}'")
    return count


def add_process_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`serve` and `worker`."""
    serve = commands.add_parser("serve", help="serve the SCIM API (migrates first)")
    serve.add_argument("--host", help="interface to listen on (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run projections and reactors here (run 'worker' instead)",
    )
    serve.add_argument(
        "--workers",
        type=_process_count,
        default=1,
        help="serve from this many processes on the one port (default 1); see docs/scaling.md",
    )
    serve.set_defaults(sync_handler=_serve)

    commands.add_parser("worker", help="run the asynchronous projections and reactors alone").set_defaults(
        handler=_worker
    )


def add_database_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`migrate` and `db url`."""
    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(handler=_migrate)
    database = commands.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    database.add_parser("url", help="print the connection URL in use (for psql and BI tools)").set_defaults(
        handler=_db_url
    )


def add_projection_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`projections rebuild|status`."""
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
