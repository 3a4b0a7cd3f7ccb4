"""Rows passed to PostgreSQL as arrays, one per column, for one unnest() statement instead of one per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """`rows` as `width` column arrays; empty arrays when there are no rows."""
    return [[row[index] for row in rows] for index in range(width)]
