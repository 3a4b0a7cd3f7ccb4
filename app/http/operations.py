"""What operators and their tools ask of a running process: is it alive, is it ready, how is it doing."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.infrastructure.migrate import pending_migrations
from app.services.container import Services
from eventstore.pool import DATABASE_UNAVAILABLE
from eventstore.positions import status

# What a client told to come back (a 503, a /readyz that is not ready) is asked to wait, in seconds.
RETRY_AFTER_SECONDS = 5
# A probe must answer before its caller gives up, whatever the database is doing.
_PROBE_TIMEOUT_SECONDS = 2.0
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One registry per app, created by create_app: nothing is registered at import time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics(_LATENCY_BUCKETS)
        self.registry.register(self.requests)
        self.lag_events = Gauge(
            "scimledger_projection_lag_events",
            "Events in the log that a projection or reactor has not processed yet.",
            ["consumer"],
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "scimledger_projection_lag_seconds",
            "Age of the oldest event a projection or reactor has not processed yet (0 when caught up).",
            ["consumer"],
            registry=self.registry,
        )
        self.parked = Gauge(
            "scimledger_projection_parked_events",
            "Events a projection or reactor set aside after repeated failures.",
            ["consumer"],
            registry=self.registry,
        )
        self.pool = Gauge(
            "scimledger_db_pool_connections",
            "Connections of this process's database pool, by state (in_use, idle, max).",
            ["state"],
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.observe(route, method, status, seconds)


class _Series:
    """One labelled series: its count, or its histogram's buckets (each bucket's own count) and sum."""

    __slots__ = ("buckets", "created", "total")

    def __init__(self, buckets: int) -> None:
        self.buckets = [0] * buckets
        self.total = 0.0
        self.created = time.time()


class RequestMetrics:
    """The requests answered, by route template, method and status, and their latency, by route template and
    method: counted in plain lists, and made into the samples prometheus_client's Counter and Histogram would
    give (`_total`, `_bucket`, `_count`, `_sum`, `_created`) when scraped, as a collector of the registry.

    Counter and Histogram take a lock for every increment, for threads that this process's requests, all on
    one event loop, never are; with their other work, observing a request through them cost 16,000
    instructions, a sixteenth of the host app's access check."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        # Each bucket's `le` label as Prometheus writes it (prometheus_client's own floatToGoString is untyped).
        self._bound_labels = [repr(float(bound)) for bound in bounds] + ["+Inf"]
        self._counts: dict[tuple[str, str, int], _Series] = {}
        self._latencies: dict[tuple[str, str], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        count = self._counts.get((route, method, status))
        if count is None:
            count = self._counts[(route, method, status)] = _Series(0)
        count.total += 1
        latency = self._latencies.get((route, method))
        if latency is None:
            latency = self._latencies[(route, method)] = _Series(len(self._bounds) + 1)
        # The first bound at or above `seconds`: a bucket counts what is less than or equal to its bound.
        latency.buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        latency.total += seconds

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        requests, latency = self._families()
        for (route, method, answered), count in self._counts.items():
            requests.add_metric([route, method, str(answered)], count.total, created=count.created)
        for (route, method), series in self._latencies.items():
            cumulative = itertools.accumulate(series.buckets)
            latency.add_metric(
                [route, method], list(zip(self._bound_labels, cumulative, strict=True)), series.total
            )
            latency.add_sample(latency.name + "_created", {"route": route, "method": method}, series.created)
        yield requests
        yield latency

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "scimledger_http_requests",
                "HTTP requests answered, by route template, method and status.",
                labels=["route", "method", "status"],
            ),
            HistogramMetricFamily(
                "scimledger_http_request_duration_seconds",
                "Time from a request's arrival to its response's end, by route template and method.",
                labels=["route", "method"],
            ),
        )


@dataclass(slots=True)
class Operations:
    """What the operational endpoints read: the services, the metrics, and the in-process runner if any."""

    services: Services
    metrics: Metrics
    runner: asyncio.Task[None] | None = None


def operations_of(request: Request) -> Operations:
    operations: Operations = request.state.operations
    return operations


async def healthz(request: Request) -> Response:
    """The process answers: for a liveness probe, which should restart it only when this fails."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Whether to send this process traffic: the database answers, its schema is this code's, the runner
    (when this process runs it) is alive. A 503 lists what is wrong."""
    operations = operations_of(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_SECONDS):
            async with operations.services.pool.acquire() as connection:
                pending = await pending_migrations(connection)
        checks["database"] = "ok"
        checks["migrations"] = (
            "ok" if not pending else "pending: " + ", ".join(migration.name for migration in pending)
        )
    except DATABASE_UNAVAILABLE as error:
        checks["database"] = f"unavailable ({type(error).__name__})"
        checks["migrations"] = "unknown"
    runner = operations.runner
    if runner is None:
        checks["runner"] = "not in this process"
    elif runner.done():
        checks["runner"] = "stopped"
    else:
        checks["runner"] = "ok"
    ready = all(value in ("ok", "not in this process") for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def metrics(request: Request) -> Response:
    """Prometheus text format. Projection lag is read from the database at scrape time; if the database is
    down the gauges keep their last values and the request metrics are still served."""
    operations = operations_of(request)
    gauges = operations.metrics
    pool = operations.services.pool
    size, idle = pool.get_size(), pool.get_idle_size()
    gauges.pool.labels("in_use").set(size - idle)
    gauges.pool.labels("idle").set(idle)
    gauges.pool.labels("max").set(pool.get_max_size())
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_SECONDS), pool.acquire() as connection:
            for consumer in await status(connection, operations.services.consumers):
                gauges.lag_events.labels(consumer.name).set(consumer.lag_events)
                gauges.lag_seconds.labels(consumer.name).set(consumer.lag_seconds)
                gauges.parked.labels(consumer.name).set(consumer.parked)
    except DATABASE_UNAVAILABLE:
        pass
    return Response(generate_latest(gauges.registry), media_type=CONTENT_TYPE_LATEST)
