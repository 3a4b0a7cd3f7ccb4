"""`scimledger audit export|key|verify-bundle`: evidence bundles (app/services/evidence.py), and checking one
offline (projections/bundles.py), with no database and no settings."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.cli.arguments import add_org_option, instant, seal_head
from app.cli.context import Context, admin
from app.cli.exits import ExitCode, Tampered
from app.cli.output import print_lines
from app.infrastructure.audit_signing_key import AuditSigningKey, public_key_text
from app.infrastructure.settings import Settings
from app.services import evidence
from domain.errors import DomainError, LogNotIntact
from projections import audit, bundles


async def _export(context: Context, args: argparse.Namespace) -> int:
    org = await context.org(args.org)
    problem = audit.window_error(args.start, args.end, "--from", "--to")
    if problem is not None:
        raise DomainError(problem)
    signer = context.services.audit_signing_key.private_key()
    target = Path(args.out)
    # Written beside the target and renamed into place: a failed export leaves no file that looks like one.
    partial = target.with_name(f".{target.name}.partial")
    try:
        with await asyncio.to_thread(partial.open, "wb") as out:
            summary = await evidence.build_bundle(
                context.connection, org.org_id, args.start, args.end, admin().actor, signer, out
            )
        os.replace(partial, target)
    except LogNotIntact as error:
        raise Tampered(str(error)) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    print_lines(
        f"{target}: '{org.name}' from {args.start.isoformat()} to {args.end.isoformat()}, "
        f"{summary.review_rows} review row(s), {summary.events} event(s) up to the head {summary.head}"
    )
    return ExitCode.OK


def _key(settings: Settings, args: argparse.Namespace) -> int:
    print_lines(public_key_text(AuditSigningKey(settings).public_key(), pem=args.pem).strip())
    return ExitCode.OK


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The key `--key` names: as `audit key` prints it (base64 of 32 raw bytes, or PEM), or a file holding it."""
    text = text.strip()
    if not text.startswith("-----BEGIN") and Path(text).is_file():
        text = Path(text).read_text().strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"the PEM key is a {type(key).__name__}, not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("neither base64, nor PEM, nor a file holding either") from error
    if len(raw) != 32:
        raise ValueError(f"it decodes to {len(raw)} bytes; an Ed25519 public key is 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def _verify_bundle(_settings: Settings, args: argparse.Namespace) -> int:
    try:
        key = parse_public_key(args.key)
    except ValueError as error:
        print(f"scimledger: --key: {error}", file=sys.stderr)
        return ExitCode.USAGE
    key_text = public_key_text(key)
    try:
        verdict = bundles.verify_bundle(args.file, key, key_text, args.head)
    except bundles.BundleProblem as error:
        raise Tampered(f"{args.file}: NOT VALID: {error}") from error
    manifest = verdict.manifest
    kept = f"; its chain passes through the head kept outside ({args.head})" if args.head else ""
    label = f" ({manifest.exported_by_label})" if manifest.exported_by_label else ""
    print_lines(
        f"{args.file}: valid, signed by {key_text}",
        f"organization '{manifest.org_name}' ({manifest.org_id}), window {manifest.start.isoformat()} to "
        f"{manifest.end.isoformat()}",
        f"{manifest.events} event(s), the whole log from its first event to the head {verdict.head}, each "
        f"matching its seal{kept}",
        f"{manifest.review_rows} review row(s), recomputed from those events",
        f"exported by {manifest.exported_by}{label} at {manifest.exported_at.isoformat()}",
    )
    return ExitCode.OK


def add_commands(audit_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`audit export`, `audit key`, `audit verify-bundle`."""
    export = audit_commands.add_parser(
        "export", help="write an evidence bundle: the access review, its events and seals, signed"
    )
    add_org_option(export)
    export.add_argument("--from", dest="start", type=instant, required=True, help="ISO 8601 time")
    export.add_argument("--to", dest="end", type=instant, required=True, help="ISO 8601 time")
    export.add_argument("--out", required=True, help="the file to write (a zip)")
    export.set_defaults(db_handler=_export)
    key = audit_commands.add_parser("key", help="print the public key that verifies evidence bundles")
    key.add_argument("--pem", action="store_true", help="as PEM rather than base64 of its 32 raw bytes")
    key.set_defaults(sync_handler=_key)
    verify = audit_commands.add_parser(
        "verify-bundle", help="check an evidence bundle offline; exit 3 naming what failed"
    )
    verify.add_argument("file", help="the bundle")
    verify.add_argument(
        "--key", required=True, help="the public key from 'audit key' (base64 or PEM), or a file holding it"
    )
    verify.add_argument(
        "--head",
        type=seal_head,
        help="a head printed by 'audit head' earlier: also prove the chain passes it",
    )
    verify.set_defaults(sync_handler=_verify_bundle)
