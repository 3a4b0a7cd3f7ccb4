"""How `scimledger` prints what it lists: one writer for every listing, in every format.

`table` (the default) is for people: aligned columns under a header row, printed even when no row follows.
`json` is one JSON document per listing, an array of objects written as the rows arrive, so a listing of any
size starts at once and holds one page in memory; `jsonl` is one object per line; `csv` has its header row
always. The JSON forms are msgspec-encoded from the same rows the table shows, with ids, times and booleans
as JSON has them.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import msgspec

Row = dict[str, Any]

LISTING_FORMATS = ("table", "json", "jsonl", "csv")

# The CLI's answers are written as they are read, a page at a time: `audit history` of a large log starts
# printing at once and holds one page, never the whole history.
CLI_PAGE = 1000

_encoder = msgspec.json.Encoder()


def print_lines(*lines: Any) -> None:
    """Each of `lines` on stdout, on a line of its own: what a command says it did."""
    for line in lines:
        print(line)


def add_format_option(parser: argparse.ArgumentParser, formats: Sequence[str] = LISTING_FORMATS) -> None:
    """The `--format` of a listing command."""
    parser.add_argument("--format", choices=formats, default=formats[0], help="output format")


def _cell(value: Any) -> str:
    """A value as a table shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


class _Writer:
    """One listing on stdout: its header, then pages of rows, then its end."""

    def __init__(self, output_format: str, columns: Sequence[str]) -> None:
        self._format = output_format
        self._columns = columns
        self._widths: dict[str, int] | None = None
        self._rows_written = 0

    def page(self, rows: list[Row]) -> None:
        if self._widths is None:
            # A table's column widths are its first page's, which the later pages keep.
            self._widths = {
                key: max([len(key), *(len(_cell(row[key])) for row in rows)]) for key in self._columns
            }
            self._header()
        if self._format == "json":
            for row in rows:
                sys.stdout.write(("," if self._rows_written else "") + "\n" + _encoder.encode(row).decode())
                self._rows_written += 1
        elif self._format == "jsonl":
            for row in rows:
                sys.stdout.write(_encoder.encode(row).decode() + "\n")
        elif self._format == "csv":
            writer = csv.writer(sys.stdout)
            for row in rows:
                writer.writerow("" if row[key] is None else row[key] for key in self._columns)
        else:
            for row in rows:
                self._line(_cell(row[key]) for key in self._columns)
        sys.stdout.flush()

    def end(self) -> None:
        if self._widths is None:
            self.page([])
        if self._format == "json":
            sys.stdout.write("\n]\n" if self._rows_written else "]\n")

    def _header(self) -> None:
        """CSV and tables start with their column names, even when no row follows; JSON with its array."""
        if self._format == "csv":
            csv.writer(sys.stdout).writerow(self._columns)
        elif self._format == "json":
            sys.stdout.write("[")
        elif self._format == "table":
            self._line(self._columns)

    def _line(self, cells: Iterable[str]) -> None:
        assert self._widths is not None
        print(
            "  ".join(
                cell.ljust(width) for cell, width in zip(cells, self._widths.values(), strict=True)
            ).rstrip()
        )


def write_rows(rows: list[Row], output_format: str, columns: Sequence[str]) -> None:
    """A whole listing, as a table, JSON, JSON lines or CSV, on stdout."""
    writer = _Writer(output_format, columns)
    writer.page(rows)
    writer.end()


async def write_row_pages(
    pages: AsyncIterator[list[Row]], output_format: str, columns: Sequence[str]
) -> None:
    """A listing arriving a page at a time, written as `write_rows` writes a whole one."""
    writer = _Writer(output_format, columns)
    async for page in pages:
        writer.page(page)
    writer.end()


async def pages_of(rows: Iterator[Row]) -> AsyncIterator[list[Row]]:
    page: list[Row] = []
    for row in rows:
        page.append(row)
        if len(page) == CLI_PAGE:
            yield page
            page = []
    yield page


def write_json_report(members: list[tuple[str, Iterator[Row]]]) -> None:
    """A report of several listings as one indented JSON object, written a row at a time."""
    sys.stdout.write("{")
    for index, (name, rows) in enumerate(members):
        sys.stdout.write(("," if index else "") + f'\n  "{name}": [')
        separator = "\n"
        for row in rows:
            formatted = msgspec.json.format(_encoder.encode(row)).decode()
            sys.stdout.write(separator + "    " + formatted.replace("\n", "\n    "))
            separator = ",\n"
        sys.stdout.write("\n  ]" if separator != "\n" else "]")
    sys.stdout.write("\n}\n")
