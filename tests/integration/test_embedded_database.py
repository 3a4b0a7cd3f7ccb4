"""The embedded server recovers from the states a killed process leaves behind, and never hangs."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.slow

HOLD_SERVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from app.infrastructure.database import start_embedded
    print(start_embedded(Path(sys.argv[1])), flush=True)
    time.sleep(600)
""")


def _start_holder(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_SERVER, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("postgresql://"), url
    return process, url


def _end(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


async def _select_one(url: str) -> int:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        value: int = await connection.fetchval("SELECT 1")
        return value
    finally:
        await connection.close()


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short path: the server's Unix socket lives in it, and socket paths are limited to ~100 bytes.
    return tmp_path_factory.mktemp("pg")


def _stop_server(data_dir: Path) -> None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().splitlines()[0])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


async def test_a_server_left_by_a_process_killed_with_sigkill_is_reused(data_dir: Path) -> None:
    holder, _ = _start_holder(data_dir)
    try:
        _end(holder)  # SIGKILL: no atexit, so the process cannot unregister
        handles = json.loads((data_dir / "postgres" / ".handle_pids.json").read_text())
        assert holder.pid in handles, "the killed process could not unregister itself"

        started = time.monotonic()
        second, second_url = _start_holder(data_dir)
        try:
            assert await _select_one(second_url) == 1
            assert time.monotonic() - started < 30
            handles = json.loads((data_dir / "postgres" / ".handle_pids.json").read_text())
            assert holder.pid not in handles
            assert second.pid in handles
        finally:
            _end(second)
    finally:
        _stop_server(data_dir)


async def test_a_stale_postmaster_pid_file_is_cleared_and_the_server_restarts(data_dir: Path) -> None:
    holder, _ = _start_holder(data_dir)
    _end(holder)
    pid_file = data_dir / "postgres" / "postmaster.pid"
    postmaster = int(pid_file.read_text().splitlines()[0])
    os.kill(postmaster, signal.SIGKILL)  # the server dies too, as in a power cut, leaving its pid file
    for _ in range(100):
        try:
            os.kill(postmaster, 0)
            await asyncio.sleep(0.05)
        except ProcessLookupError:
            break
    lines = pid_file.read_text().splitlines()
    lines[0] = "999999"  # and the pid in it now names no process
    pid_file.write_text("\n".join(lines) + "\n")
    second, second_url = _start_holder(data_dir)
    try:
        assert await _select_one(second_url) == 1
    finally:
        _end(second)
        _stop_server(data_dir)
