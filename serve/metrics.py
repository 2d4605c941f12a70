"""Prometheus metrics of the server, in their own registry (one per server).

With several worker processes (`--workers`), prometheus-client's multiprocess mode is on (the supervisor
sets PROMETHEUS_MULTIPROC_DIR for them): every worker writes its values to files there, and whichever
worker answers /metrics adds up all of them. Gauges that are read from a function at scrape time cannot
work that way, so there each worker copies its queue lengths into its file a few times a second
(serve/dataplane.py) and when it answers /metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    def __init__(self):
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inference_requests",
            "Requests by model, endpoint and status (gRPC calls by the HTTP status of their outcome)",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Request latency, body read to reply",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "inference_batch_rows",
            "Rows per onnxruntime call (dynamic batching)",
            ["model"],
            buckets=ROW_BUCKETS,
            registry=self.registry,
        )
        self.queue_time = Histogram(
            "inference_queue_seconds",
            "Time a request waited in the batching queue",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queued = Gauge(
            "inference_queue_requests",
            "Requests waiting in the batching queue now",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",  # the workers' queues added up
        )
        self.ready = Gauge(
            "server_ready",
            "1 when every model is loaded (in every worker)",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.disk_copy_broken = Gauge(
            "model_disk_copy_broken",
            "1 while a served version's file on disk is refused (the copy loaded before serves on)",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.children: dict[tuple, tuple] = {}  # labels() costs a lock and a lookup; keep the children
        self.watched: dict[str, Callable[[], int]] = {}  # model → its queue length, for `refresh`

    def record(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, endpoint, status)
        children = self.children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, endpoint, str(status)),
                self.latency.labels(model, endpoint),
            )
            self.children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def disk_copies(self, model: str, before: dict[str, str], now: dict[str, str]) -> None:
        """A model's versions whose disk copy is refused: `before` the swap and `now`."""
        for version in now:
            self.disk_copy_broken.labels(model, version).set(1)
        for version in set(before) - set(now):
            self.disk_copy_broken.labels(model, version).set(0)

    def watch_queue(self, model: str, count: Callable[[], int]) -> None:
        """Report `count()` as the model's queue length: read at scrape, nothing on the request path."""
        if self.multiprocess:
            self.watched[model] = count
        else:
            self.queued.labels(model).set_function(count)

    def refresh(self) -> None:
        """Multiprocess mode: copy the queue lengths into this worker's file (a few times a second)."""
        for model, count in self.watched.items():
            self.queued.labels(model).set(count())

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.refresh()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
