"""`scimledger`: serve the API and administer organizations, tokens and projections.

Every command uses the same database as `serve`: DATABASE_URL when set, else the embedded server in the
data dir. Only `migrate` and `serve` change its schema. Every other command first checks that the database
is migrated to exactly this code's migrations and refuses it otherwise, naming it, without creating
anything: pointed at the wrong database by mistake, a command leaves it as it found it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import asyncpg

from app.bootstrap import Schema, bootstrap
from app.cli import (
    admin_commands,
    audit_commands,
    console_commands,
    operations_commands,
    personal_data_commands,
    schema_commands,
)
from app.cli.context import Context, Handler
from app.cli.exits import ExitCode, Tampered
from app.cli.user_commands import add_user_commands
from app.infrastructure import logs
from app.infrastructure.database import EmbeddedDatabaseError, database_location
from app.infrastructure.migrate import MigrationError, NewerSchema, NotMigrated
from app.infrastructure.settings import InvalidSetting, Settings
from domain.errors import DomainError, PersonalDataKeyMissing
from eventstore.store import ConcurrencyConflict


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scimledger", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # In the order `scimledger --help` lists them.
    operations_commands.add_process_commands(commands)
    add_user_commands(commands)
    operations_commands.add_database_commands(commands)
    admin_commands.add_org_commands(commands)
    schema_commands.add_commands(commands)
    admin_commands.add_access_commands(commands)
    audit_commands.add_commands(commands)
    console_commands.add_commands(commands)
    personal_data_commands.add_commands(commands)
    operations_commands.add_projection_commands(commands)
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
    except PersonalDataKeyMissing as error:  # a setting is wrong: SCIMLEDGER_PERSONAL_DATA_KEYS
        print(f"scimledger: {error}", file=sys.stderr)
        return ExitCode.USAGE
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
