"""`scimledger schema extend|list|show`: an org admin declares the custom attributes their identity provider
sends (see README, "Custom attributes")."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import tenancy
from app.org_schemas import DeclaredSchema, OrgSchemaService, parse
from domain.errors import DomainError
from eventstore.store import Metadata

if TYPE_CHECKING:
    from app.cli import Context


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DomainError(f"Cannot read the schema file '{path}': {error.strerror}.") from error


async def _extend(context: Context, args: argparse.Namespace) -> int:
    org = await tenancy.find_org(context.connection, args.org)
    declaration = parse(_read(args.file))
    # An org admin's action, recorded as such on the event, as the catalog's commands are.
    admin = Metadata(actor=f"admin:{getpass.getuser()}")
    version, changed = await context.services.schemas.declare(org.org_id, declaration, admin)
    if changed:
        print(
            f"declared schema '{declaration.id}' for '{org.name}', version {version}, with "
            f"{len(declaration.attributes)} attribute(s); SCIM clients see it within the token cache's "
            "lifetime (SCIMLEDGER_TOKEN_CACHE_SECONDS)"
        )
    else:
        print(
            f"schema '{declaration.id}' of '{org.name}' is already declared so (version {version}): unchanged"
        )
    return 0


async def _list(context: Context, args: argparse.Namespace) -> int:
    org = await tenancy.find_org(context.connection, args.org)
    declared = await OrgSchemaService.declared(context.connection, org.org_id)
    if args.format == "json":
        print(json.dumps([_listing(schema) for schema in declared], indent=2))
        return 0
    if not declared:
        print(f"'{org.name}' has declared no schema of its own", flush=True)
        return 0
    print(f"{'URN':<60}  {'VERSION':>7}  {'ATTRIBUTES':>10}  {'DECLARED AT':<19}  DECLARED BY")
    for schema in declared:
        print(
            f"{schema.urn:<60}  {schema.version:>7}  {len(schema.declaration.get('attributes', [])):>10}  "
            f"{schema.declared_at:%Y-%m-%d %H:%M:%S}  {schema.declared_by}"
        )
    return 0


def _listing(schema: DeclaredSchema) -> dict[str, Any]:
    return {
        "urn": schema.urn,
        "version": schema.version,
        "attributes": [attribute["name"] for attribute in schema.declaration.get("attributes", [])],
        "declared_at": schema.declared_at.isoformat(),
        "declared_by": schema.declared_by,
    }


async def _show(context: Context, args: argparse.Namespace) -> int:
    org = await tenancy.find_org(context.connection, args.org)
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
    extend.add_argument("--org", required=True, help="organization id or name")
    extend.add_argument("--file", required=True, help="the schema, as JSON (see README, 'Custom attributes')")
    extend.set_defaults(db_handler=_extend)
    listing = schema.add_parser("list", help="list the organization's declared extension schemas")
    listing.add_argument("--org", required=True, help="organization id or name")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(db_handler=_list)
    show = schema.add_parser("show", help="print a declared extension schema as JSON")
    show.add_argument("--org", required=True, help="organization id or name")
    show.add_argument("urn", help="the schema's URN")
    show.set_defaults(db_handler=_show)
