"""Log lines: the request id on each, no e-mail address or exception message unless at debug level."""

import logging

import msgspec

from app.infrastructure import logs


def record(message: str, *args: object, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    return logging.LogRecord("scimledger.test", logging.ERROR, __file__, 1, message, args, exc_info)


def fail(message: str) -> None:
    # Raised from a variable: a traceback shows source lines, and the test's own must not hold the value.
    raise ValueError(message)


def failure(message: str = "duplicate key: ann@example.com") -> BaseException:
    try:
        fail(message)
    except ValueError as error:
        return error
    raise AssertionError("fail() returned")


def test_a_json_line_carries_the_request_id_and_redacts_addresses_and_exception_messages() -> None:
    token = logs.request_id.set("req-7")
    try:
        line = logs.JsonFormatter(verbose=False).format(
            record("user %s failed", "ann@example.com", error=failure())
        )
    finally:
        logs.request_id.reset(token)
    entry = msgspec.json.decode(line)
    assert entry["request_id"] == "req-7"
    assert entry["message"] == "user <email> failed"
    assert "ValueError" in entry["traceback"]
    assert "failure" in entry["traceback"]
    assert "ann@example.com" not in line
    assert "duplicate key" not in line


def test_at_debug_level_the_whole_story_is_told() -> None:
    line = logs.JsonFormatter(verbose=True).format(
        record("user %s failed", "ann@example.com", error=failure())
    )
    assert "ann@example.com" in msgspec.json.decode(line)["message"]
    assert "duplicate key: ann@example.com" in line


def test_the_text_format_tells_the_same_for_a_terminal() -> None:
    text = logs.TextFormatter(verbose=False).format(
        record("user %s failed", "ann@example.com", error=failure())
    )
    head, *trace = text.splitlines()
    assert head.endswith("ERROR   scimledger.test: user <email> failed")
    assert trace[-1] == "ValueError"
