"""`scimledger`: serve the API and administer organizations, tokens and projections.

Every command uses the same database as `serve`: DATABASE_URL when set, else the embedded server in the
data dir. Commands that need tables migrate first, so a fresh data dir works with any command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg

from app import tenancy
from app.database import EmbeddedDatabaseError, database_url
from app.migrate import MigrationError, migrate
from app.settings import Settings
from domain.errors import DomainError
from eventstore.pool import Connection, init_connection
from projections import scim_users

PROJECTIONS: dict[str, Callable[[Connection], Awaitable[int]]] = {"scim": scim_users.rebuild}


def _print(*lines: Any) -> None:
    for line in lines:
        print(line)


async def _connect(settings: Settings) -> asyncpg.Connection:
    url = await asyncio.to_thread(database_url, settings)
    connection = await asyncpg.connect(url)
    await init_connection(connection)
    await migrate(connection)
    return connection


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process would die by the
            # signal, skip atexit (leaving the embedded PostgreSQL running) and report failure to its
            # supervisor. A completed graceful shutdown is a success: handle the signals, exit normally.
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    host = args.host or settings.host
    port = args.port or settings.port
    print(
        f"scimledger: SCIM base URL http://{host}:{port}/scim/v2\n"
        "  To get a token: scimledger org create NAME, then scimledger token issue --org NAME",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level=settings.log_level, proxy_headers=False
    )
    server = Server(config)
    server.run()
    return 0 if server.started else 3  # uvicorn's own code for a failed start-up


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    url = await asyncio.to_thread(database_url, settings)
    connection = await asyncpg.connect(url)
    try:
        applied = await migrate(connection)
    finally:
        await connection.close()
    _print(*(f"applied {name}" for name in applied) if applied else ["migrations are current"])
    return 0


async def _org_create(connection: Connection, args: argparse.Namespace) -> int:
    org = await tenancy.create_org(connection, args.name)
    _print(f"created organization '{org.name}'", org.org_id)
    return 0


async def _org_list(connection: Connection, args: argparse.Namespace) -> int:
    for org in await tenancy.list_orgs(connection):
        _print(f"{org.org_id}  {org.name}")
    return 0


async def _token_issue(connection: Connection, args: argparse.Namespace) -> int:
    org = await tenancy.find_org(connection, args.org)
    token_id, token = await tenancy.issue_token(connection, org.org_id, args.scope, args.label)
    # The token alone on stdout, so that TOKEN=$(scimledger token issue --org X) works; the rest to stderr.
    print(f"issued {args.scope} token {token_id} for '{org.name}'; it is shown only once", file=sys.stderr)
    _print(token)
    return 0


async def _token_list(connection: Connection, args: argparse.Namespace) -> int:
    org = await tenancy.find_org(connection, args.org)
    for info in await tenancy.list_tokens(connection, org.org_id):
        state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M:%S}" if info.revoked_at else "active"
        _print(
            f"{info.token_id}  {info.scope:<8} {info.created_at:%Y-%m-%d %H:%M:%S}  {state}  {info.label or ''}"
        )
    return 0


async def _token_revoke(connection: Connection, args: argparse.Namespace) -> int:
    try:
        token_id = uuid.UUID(args.token_id)
    except ValueError as error:
        raise DomainError(
            f"'{args.token_id}' is not a token id (see 'scimledger token list --org ORG')."
        ) from error
    await tenancy.revoke_token(connection, token_id)
    _print(f"revoked token {token_id}")
    return 0


async def _projections_rebuild(connection: Connection, args: argparse.Namespace) -> int:
    replayed = await PROJECTIONS[args.name](connection)
    _print(f"rebuilt {args.name} from {replayed} events")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scimledger", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the SCIM API (migrates first)")
    serve.add_argument("--host", help="interface to listen on (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    serve.set_defaults(sync_handler=_serve)

    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(handler=_migrate)

    org = commands.add_parser("org", help="organizations").add_subparsers(dest="org_command", required=True)
    org_create = org.add_parser("create", help="create an organization; prints its id on the last line")
    org_create.add_argument("name")
    org_create.set_defaults(db_handler=_org_create)
    org.add_parser("list", help="list organizations").set_defaults(db_handler=_org_list)

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
    token_list.set_defaults(db_handler=_token_list)
    token_revoke = token.add_parser("revoke", help="revoke a token by its id")
    token_revoke.add_argument("token_id")
    token_revoke.set_defaults(db_handler=_token_revoke)

    projections = commands.add_parser("projections", help="read models").add_subparsers(
        dest="projections_command", required=True
    )
    rebuild = projections.add_parser("rebuild", help="rebuild a projection from the event log alone")
    rebuild.add_argument("name", choices=sorted(PROJECTIONS))
    rebuild.set_defaults(db_handler=_projections_rebuild)
    return parser


async def _with_connection(
    settings: Settings,
    handler: Callable[[asyncpg.Connection, argparse.Namespace], Awaitable[int]],
    args: argparse.Namespace,
) -> int:
    connection = await _connect(settings)
    try:
        return await handler(connection, args)
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    # Administrative commands stay quiet unless something is wrong; `serve` logs at the configured level.
    level = settings.log_level.upper() if args.command == "serve" else "WARNING"
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if hasattr(args, "sync_handler"):
            return int(args.sync_handler(settings, args))
        if hasattr(args, "db_handler"):
            return asyncio.run(_with_connection(settings, args.db_handler, args))
        return int(asyncio.run(args.handler(settings, args)))
    except (DomainError, MigrationError, EmbeddedDatabaseError) as error:
        print(f"scimledger: {error}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as error:
        print(f"scimledger: database error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
