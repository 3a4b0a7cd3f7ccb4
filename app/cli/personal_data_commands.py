"""`scimledger personal-data rewrap`: every person's data key rewrapped under the current key-encryption key
(the first of SCIMLEDGER_PERSONAL_DATA_KEYS), the step between adding a new KEK and dropping the old one."""

from __future__ import annotations

import argparse

from app.cli.context import Context
from app.cli.exits import ExitCode
from app.cli.output import print_lines
from app.infrastructure.personal_data_keys import personal_data_cipher, rewrap_all


async def _rewrap(context: Context, args: argparse.Namespace) -> int:
    rewrapped = await rewrap_all(context.connection, personal_data_cipher(context.services.settings))
    print_lines(
        f"{rewrapped} personal data key(s) rewrapped under the first key of SCIMLEDGER_PERSONAL_DATA_KEYS; "
        "the keys after it may now be removed."
    )
    return ExitCode.OK


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    personal = commands.add_parser("personal-data", help="the keys that encrypt personal data")
    actions = personal.add_subparsers(dest="personal_data_command", required=True)
    rewrap = actions.add_parser(
        "rewrap", help="rewrap every person's data key under the current key-encryption key (rotation)"
    )
    rewrap.set_defaults(db_handler=_rewrap)
