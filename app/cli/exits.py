"""The exit codes of `scimledger`, one table for every command (README's *Exit codes* lists the same).

Scripts branch on these, so each code means one thing whatever the command: a tampered log is never
confused with a busy port, nor a database error with a typo on the command line.
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    OK = 0
    # The command was refused: an unknown organization or user, a duplicate name, an id that names nothing.
    REFUSED = 1
    # The command line or a setting is wrong. argparse already exits 2 on a bad command line, a value that is
    # not what its option takes included (an id, a time: see app/cli/arguments.py), and a bad SCIMLEDGER_*
    # variable is the same mistake made in the environment.
    USAGE = 2
    # `audit verify` (and the commands that verify first) found the log tampered with or not provably intact;
    # `audit verify-bundle` found an evidence bundle not valid.
    TAMPERED = 3
    # The database could not be reached, or failed the command.
    DATABASE = 4
    # `serve` could not start: its port is taken, or its start-up failed.
    NOT_STARTED = 5
    # The database was never migrated, or is behind this code's migrations: `scimledger migrate` is the remedy.
    # Every command but `migrate` and `serve` refuses it, and changes nothing.
    NOT_MIGRATED = 6
    # The database holds migrations this code does not know (a newer scimledger migrated it): upgrade first.
    NEWER_SCHEMA = 7
    # The reader of stdout went away (`scimledger audit history | head -1`). A Unix tool would die of SIGPIPE,
    # which a shell reports as 128 + 13; this is the same code, reached after a clean shutdown (the embedded
    # database is released), so `set -o pipefail` scripts see what they see from `cat` or `grep`.
    STDOUT_CLOSED = 128 + signal.SIGPIPE


class Tampered(Exception):
    """The log failed verification, so the command refused to act on it (exit TAMPERED)."""
