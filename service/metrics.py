"""Prometheus metrics of a running ``cxl serve``, in the text exposition format.

The figures live where the work is done (ingest statistics, the projector's positions, the last
checkpoint); a collector reads them at scrape time. prometheus_client's metric *families* and its
exposition writer are used, not its global metric objects, whose storage mode that library picks
from an environment variable of its own — nothing but our settings may decide how we run.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0


class RequestLatency:
    """Request durations by route template and status code, thread-safe."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str, int], _Histogram] = {}
        self._lock = threading.Lock()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            histogram = self._by.setdefault((method, route, status), _Histogram())
            histogram.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            histogram.total += seconds

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "cxl_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            labels=["method", "route", "status"],
        )
        with self._lock:
            items = [(k, list(h.counts), h.total) for k, h in self._by.items()]
        for (method, route, status), counts, total in sorted(items):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([method, route, str(status)], buckets, total)
        return family


@dataclass(frozen=True)
class Readings:
    """Everything the collector reports, read from the running service at scrape time."""

    sealed: int
    rejected: int
    duplicates: int
    conflicts: int
    refused_erased: int
    dead_lettered: int
    relayed: int
    checkpoints: int
    accepted_http: int
    rejected_http: int
    consumer_lag: dict[int, int]
    projected_position: int
    ledger_position: int
    checkpoint_age_s: float | None
    verified_ok: bool | None
    alerts_published: int = 0


class ServiceCollector(Collector):
    def __init__(self, read: Callable[[], Readings], latency: RequestLatency) -> None:
        self._read = read
        self._latency = latency
        self._started = time.time()

    def collect(self) -> Iterator[Metric]:
        r = self._read()
        counters: list[tuple[str, str, float]] = [
            ("cxl_events_sealed", "Events sealed into the ledger since start.", r.sealed),
            (
                "cxl_events_rejected",
                "Records rejected by the contract (dead-lettered).",
                r.rejected,
            ),
            ("cxl_events_duplicates", "Repeated event_ids skipped (already sealed).", r.duplicates),
            ("cxl_events_conflicts", "event_ids reused with different content.", r.conflicts),
            (
                "cxl_events_refused_erased",
                "Events of erased customers refused (not sealed, not dead-lettered).",
                r.refused_erased,
            ),
            (
                "cxl_events_dead_lettered",
                "Records written to the dead-letter topic.",
                r.dead_lettered,
            ),
            ("cxl_events_relayed", "Sealed events relayed to the ledger topic.", r.relayed),
            ("cxl_checkpoints_published", "Signed checkpoints published.", r.checkpoints),
            ("cxl_http_events_accepted", "Events accepted by POST /v1/events.", r.accepted_http),
            ("cxl_http_events_rejected", "Items refused by POST /v1/events.", r.rejected_http),
            ("cxl_alerts_published", "New alerts confirmed delivered.", r.alerts_published),
        ]
        for name, text, value in counters:
            yield CounterMetricFamily(name, text, value=value)
        lag = GaugeMetricFamily(
            "cxl_consumer_lag", "Records on the events topic not yet sealed.", labels=["partition"]
        )
        for partition, behind in sorted(r.consumer_lag.items()):
            lag.add_metric([str(partition)], behind)
        yield lag
        yield GaugeMetricFamily(
            "cxl_projector_lag",
            "Sealed events not yet in the projections.",
            value=max(r.ledger_position - r.projected_position, 0),
        )
        yield GaugeMetricFamily(
            "cxl_ledger_position",
            "Last ledger position (sealed events plus one stream-creation row per customer).",
            value=r.ledger_position,
        )
        yield GaugeMetricFamily(
            "cxl_projected_position",
            "Ledger position the projections reached.",
            value=r.projected_position,
        )
        if r.checkpoint_age_s is not None:
            yield GaugeMetricFamily(
                "cxl_checkpoint_age_seconds",
                "Seconds since the last checkpoint was published.",
                value=r.checkpoint_age_s,
            )
        if r.verified_ok is not None:
            yield GaugeMetricFamily(
                "cxl_ledger_verified", "1 when the last verification passed.", value=r.verified_ok
            )
        yield GaugeMetricFamily(
            "cxl_uptime_seconds",
            "Seconds since the server started.",
            value=time.time() - self._started,
        )
        yield self._latency.family()


def registry_of(read: Callable[[], Readings], latency: RequestLatency) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(read, latency))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
