"""Types for `scimledger`'s arguments: argparse parses each value as it reads the command line, so a value that
is not one (an id, a time, a seal head) is a usage error (exit 2) named with its option, found before any
database is reached."""

from __future__ import annotations

import argparse
import datetime
import uuid
from collections.abc import Callable
from typing import TypeVar

from projections import seals
from scim.instants import parse_instant

Parsed = TypeVar("Parsed")


def from_parser(parse: Callable[[str], Parsed]) -> Callable[[str], Parsed]:
    """`parse` as an argparse type that keeps its ValueError's message: argparse would otherwise print
    "invalid <function name> value" in its place."""

    def argument(text: str) -> Parsed:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return argument


def identifier(what: str) -> Callable[[str], uuid.UUID]:
    """An argparse type for an id; one that is not an id is refused as not being `what`."""

    def argument(text: str) -> uuid.UUID:
        try:
            return uuid.UUID(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}.") from error

    return argument


instant: Callable[[str], datetime.datetime] = from_parser(parse_instant)
seal_head: Callable[[str], seals.Head] = from_parser(seals.Head.parse)


def add_org_option(parser: argparse.ArgumentParser) -> None:
    """The `--org ORG` of a command about one organization: its id or its unique name."""
    parser.add_argument("--org", required=True, help="organization id or name")
