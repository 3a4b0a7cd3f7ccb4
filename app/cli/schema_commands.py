"""`scimledger schema extend|list|show`: an org admin declares the custom attributes their identity provider
sends (see README, "Custom attributes")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.cli.arguments import add_org_option
from app.cli.context import Context, admin
from app.cli.output import Row, add_format_option, write_rows
from app.services.org_schemas import DeclaredSchema, OrgSchemaService, parse
from domain.errors import DomainError

_LISTING_COLUMNS = ("urn", "version", "attributes", "declared_at", "declared_by")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DomainError(f"Cannot read the schema file '{path}': {error.strerror}.") from error


async def _extend(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    declaration = parse(_read(args.file))
    # An org admin's action, recorded as such on the event, as the catalog's commands are.
    version, changed = await context.services.schemas.declare(org.org_id, declaration, admin())
    if changed:
        print(
            f"declared schema '{declaration.id}' for '{org.name}', version {version}, with "
            f"{len(declaration.attributes)} attribute(s); values sent under it are accepted at once, and "
            "/Schemas shows it within the token cache's lifetime (SCIMLEDGER_TOKEN_CACHE_SECONDS)"
        )
    else:
        print(
            f"schema '{declaration.id}' of '{org.name}' is already declared so (version {version}): unchanged"
        )
    return 0


async def _list(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    declared = await OrgSchemaService.declared(context.connection, org.org_id)
    rows = [_listing(schema, args.format) for schema in declared]
    write_rows(rows, args.format, _LISTING_COLUMNS)
    return 0


def _listing(schema: DeclaredSchema, output_format: str) -> Row:
    names = [attribute["name"] for attribute in schema.declaration.get("attributes", [])]
    return {
        "urn": schema.urn,
        "version": schema.version,
        # A table shows the names in one cell; the JSON forms keep them a list.
        "attributes": ", ".join(names) if output_format in ("table", "csv") else names,
        "declared_at": schema.declared_at,
        "declared_by": schema.declared_by,
    }


async def _show(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    schema = await OrgSchemaService.find(context.connection, org.org_id, args.urn)
    print(json.dumps(schema.declaration, indent=2))
    return 0


def add_commands(commands: Any) -> None:
    """`schema ...` under the CLI's top-level subcommands."""
    schema = commands.add_parser(
        "schema", help="an organization's custom attributes: extension schemas of the User resource"
    ).add_subparsers(dest="schema_command", required=True)
    extend = schema.add_parser(
        "extend", help="declare (or replace) an extension schema from an RFC 7643 §7 schema file"
    )
    add_org_option(extend)
    extend.add_argument("--file", required=True, help="the schema, as JSON (see README, 'Custom attributes')")
    extend.set_defaults(db_handler=_extend)
    listing = schema.add_parser("list", help="list the organization's declared extension schemas")
    add_org_option(listing)
    add_format_option(listing)
    listing.set_defaults(db_handler=_list)
    show = schema.add_parser("show", help="print a declared extension schema as JSON")
    add_org_option(show)
    show.add_argument("urn", help="the schema's URN")
    show.set_defaults(db_handler=_show)
