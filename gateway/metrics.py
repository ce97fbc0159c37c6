"""Prometheus metrics for one gateway instance.

Each app gets its own registry (tests build many apps in one process). Request counters and latency
histograms are updated as requests finish; device and queue figures are read from the pool at
scrape time by a collector, so they can never drift from the pool's own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.pool import LINK_FIELDS, DevicePool, DeviceState

# Device work takes from milliseconds (host build) to tens of seconds (QEMU, real UART at 115200).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class _PoolCollector(Collector):
    def __init__(self, pool: Callable[[], DevicePool | None], jobs: Callable[[], dict[str, int]]) -> None:
        self._pool = pool
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        pool = self._pool()
        queue = GaugeMetricFamily("rnnpool_queue_depth", "Requests waiting for a device")
        capacity = GaugeMetricFamily("rnnpool_queue_capacity", "Requests that may wait before 429")
        up = GaugeMetricFamily("rnnpool_device_up", "1 when the device is handshaken", labels=["device"])
        busy = GaugeMetricFamily("rnnpool_device_busy", "1 while the device is running a request", labels=["device"])
        state = GaugeMetricFamily("rnnpool_device_state", "Current device state (1 for the active one)",
                                  labels=["device", "state"])  # fmt: skip
        link = {
            name: CounterMetricFamily(f"rnnpool_link_{name}", f"Link statistic {name}, all sessions", labels=["device"])
            for name in LINK_FIELDS
        }
        requests = CounterMetricFamily("rnnpool_device_requests", "Requests per device", labels=["device", "result"])
        jobs = GaugeMetricFamily("rnnpool_jobs", "Jobs held by the gateway", labels=["state"])
        if pool is not None:
            queue.add_metric([], pool.queue_depth)
            capacity.add_metric([], pool.queue_capacity)
            for snap in pool.snapshots():
                up.add_metric([snap.url], 1.0 if snap.state in (DeviceState.READY, DeviceState.BUSY) else 0.0)
                busy.add_metric([snap.url], 1.0 if snap.state == DeviceState.BUSY else 0.0)
                for member in DeviceState:
                    state.add_metric([snap.url, member.value], 1.0 if snap.state == member else 0.0)
                for name in LINK_FIELDS:
                    link[name].add_metric([snap.url], snap.link.get(name, 0))
                requests.add_metric([snap.url, "ok"], snap.requests_ok)
                requests.add_metric([snap.url, "failed"], snap.requests_failed)
                requests.add_metric([snap.url, "cancelled"], snap.requests_cancelled)
        for job_state, count in sorted(self._jobs().items()):
            jobs.add_metric([job_state], count)
        yield from (queue, capacity, up, busy, state, *link.values(), requests, jobs)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pool: DevicePool | None = None
        self.job_counts: Callable[[], dict[str, int]] = dict
        self.requests = Counter(
            "rnnpool_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "rnnpool_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.detect_stage_seconds = Histogram(
            "rnnpool_detect_stage_seconds",
            "Detection latency by stage: decode, queue_wait, transfer, device_compute, total",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected_uploads = Counter(
            "rnnpool_rejected_uploads", "Uploads refused, by error code", ["code"], registry=self.registry
        )
        self.errors = Counter("rnnpool_errors", "Error responses by code", ["code"], registry=self.registry)
        self.registry.register(_PoolCollector(lambda: self.pool, lambda: self.job_counts()))

    def observe_detect(self, stages: dict[str, float]) -> None:
        for stage, seconds in stages.items():
            self.detect_stage_seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
