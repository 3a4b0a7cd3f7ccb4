"""Keys the service generates for itself in the data dir, with the embedded database (the webhooks' Fernet key,
the evidence bundles' signing key): made once, readable by this user alone, the same in every process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

# Both keys are 44 characters of base64: a file shorter than that is being written by the process that made it.
_WHOLE_KEY_CHARACTERS = 44


def key_in(path: Path, generate: Callable[[], str], missing: Callable[[str], Exception]) -> str:
    """The key in `path`, written there first (by `generate`) if there is none. O_EXCL: two processes starting
    at once agree on one key (the loser reads the winner's). `missing` makes the error for a file that never
    holds a whole key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_whole_key(path, missing)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(generate())
    return _read_whole_key(path, missing)


def _read_whole_key(path: Path, missing: Callable[[str], Exception]) -> str:
    for _ in range(100):
        text = path.read_text().strip()
        if len(text) >= _WHOLE_KEY_CHARACTERS:
            return text
        time.sleep(0.01)
    raise missing(f"{path} holds no whole key; delete it to have a new one generated.")
