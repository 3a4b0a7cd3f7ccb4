"""Structured logs: one JSON object per line, carrying the id of the request being served.

Logs are read by people who must not see the identities being provisioned, so at the default level no
message carries an e-mail address and no traceback carries an exception's message (a database error's
message quotes the row it refused, userName included). Set SCIMLEDGER_LOG_LEVEL=debug to see them.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import re
import sys
import traceback
from typing import Any

import msgspec

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# What our own records add with `extra=`; anything else on a record is the logging module's.
FIELDS = ("method", "route", "path", "status", "duration_ms", "consumer", "error_type")
_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[A-Za-z]{2,}")
_encoder = msgspec.json.Encoder()


def redact(text: str) -> str:
    return _EMAIL.sub("<email>", text)


def quotes_email(text: str) -> bool:
    return _EMAIL.search(text) is not None


def _traceback(record: logging.LogRecord, with_messages: bool) -> str:
    assert record.exc_info is not None
    if with_messages:
        return "".join(traceback.format_exception(*record.exc_info))
    # Where it failed and with what type, never what it said.
    lines = []
    for exception in _chain(record):
        error_type = exception.exc_type
        lines += [*exception.stack.format(), f"{getattr(error_type, '__qualname__', error_type)}\n"]
    return "".join(lines)


def _chain(record: logging.LogRecord) -> list[traceback.TracebackException]:
    assert record.exc_info is not None
    chained = []
    current: traceback.TracebackException | None = traceback.TracebackException(*record.exc_info)
    while current is not None:
        chained.append(current)
        current = current.__cause__ or current.__context__
    return list(reversed(chained))


class JsonFormatter(logging.Formatter):
    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """What a line says, whatever its format."""
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message if self.verbose else redact(message),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["traceback"] = _traceback(record, self.verbose)
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return _encoder.encode(self.entry(record)).decode()


class TextFormatter(JsonFormatter):
    """The same content for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        entry = self.entry(record)
        traceback_text = entry.pop("traceback", "")
        head = f"{entry.pop('time')} {entry.pop('level').upper():7} {entry.pop('logger')}: {entry.pop('message')}"
        rest = " ".join(f"{key}={value}" for key, value in entry.items())
        return "\n".join(part for part in (f"{head} {rest}".rstrip(), traceback_text.rstrip()) if part)


def configure(level: str, format: str) -> None:
    """Route every logger, uvicorn's included, to stderr in the chosen format."""
    verbose = level.lower() == "debug"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(verbose) if format == "json" else TextFormatter(verbose))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
