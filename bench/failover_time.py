"""How long PostgreSQL is without a primary when the primary node of a pg_auto_failover formation crashes:
with the monitor's timeouts the failover test uses (tests/ha/formation.py), and with pg_auto_failover's
defaults, which production keeps.

A monitor, a primary and a synchronous standby on loopback (as `make test-ha` runs them); one client inserts
a row every 50 ms through the multi-host URL with target_session_attrs=read-write, reconnecting after each
failure, as the service's pool does. The figure: seconds from the SIGKILL of the primary node (its
pg_autoctl supervisor and its postmaster) to the first insert committed on the new primary.

    .venv/bin/python -m bench.failover_time [--rounds 1]    (make bench-failover)

Needs Debian's postgresql-15-auto-failover and pg-auto-failover-cli (`make test-ha` installs them), and root
(the nodes run as the postgres user).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import asyncpg

from tests.ha.formation import MONITOR_TIMEOUTS_MS, formation_directory, new_formation

BOUND_SECONDS = 300.0


async def one_failover(monitor_settings: dict[str, int]) -> float:
    with formation_directory() as root:
        formation = new_formation(root)
        formation.monitor_settings = monitor_settings
        try:
            await formation.start()
            url = formation.url()
            setup = await asyncpg.connect(url)
            await setup.execute("CREATE TABLE IF NOT EXISTS writes (at timestamptz DEFAULT now())")
            await setup.close()
            primary = await formation.primary()
            connection: asyncpg.Connection | None = None
            killed_at: float | None = None
            started = time.monotonic()
            while time.monotonic() - started < BOUND_SECONDS:
                if killed_at is None and time.monotonic() - started > 2:
                    await asyncio.to_thread(formation.kill, primary)
                    killed_at = time.monotonic()
                try:
                    if connection is None or connection.is_closed():
                        connection = await asyncpg.connect(url, timeout=2)
                    await connection.execute("INSERT INTO writes DEFAULT VALUES", timeout=2)
                    if killed_at is not None:
                        await connection.close()
                        return time.monotonic() - killed_at
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError):  # fmt: skip
                    if connection is not None:
                        connection.terminate()
                    connection = None
                await asyncio.sleep(0.05)
            raise RuntimeError(f"no primary within {BOUND_SECONDS} s of the kill")
        finally:
            formation.stop()


async def main(rounds: int) -> None:
    results: dict[str, list[float]] = {"test timeouts": [], "pg_auto_failover defaults": []}
    for _ in range(rounds):
        # In turns, so that the machine's load falls on both alike.
        results["test timeouts"].append(await one_failover(dict(MONITOR_TIMEOUTS_MS)))
        results["pg_auto_failover defaults"].append(await one_failover({}))
    for name, seconds in results.items():
        print(f"{name}: kill to first commit {statistics.median(seconds):.1f} s (median of {len(seconds)}: "
              f"{', '.join(f'{value:.1f}' for value in seconds)})")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    asyncio.run(main(parser.parse_args().rounds))
