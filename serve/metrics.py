"""What the server counts: Prometheus metrics, in their own registry (one per server), and Triton's
inference statistics of each served model version (`InferenceStatistics`, the statistics extension).

With several worker processes (`--workers`), prometheus-client's multiprocess mode is on (the supervisor
sets PROMETHEUS_MULTIPROC_DIR for them): every worker writes its values to files there, and whichever
worker answers /metrics adds up all of them. Gauges that are read from a function at scrape time cannot
work that way, so there each worker copies its queue lengths into its file a few times a second
(serve/dataplane.py) and when it answers /metrics.
"""

from __future__ import annotations

import os
import time
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
        self.payloads_written = Counter(
            "payload_log_written",
            "Inference requests written to the payload log (a request and a response CloudEvent each)",
            registry=self.registry,
        )
        self.payloads_dropped = Counter(
            "payload_log_dropped",
            "Sampled inference requests not written to the payload log: the writer was behind (queue_full) "
            "or the write failed (write_error)",
            ["reason"],
            registry=self.registry,
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


MAX_BATCH_SIZES = 4096  # distinct batch sizes given their own statistics, per model version
DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
COMPUTE = DURATIONS[3:]
NO_CACHE = ("cache_hit", "cache_miss")  # there is no response cache: always zero, written as Triton does


class InferenceStatistics:
    """Triton's statistics of one served model version since it was loaded, in this process: plain
    counters, changed on the event loop only (Batcher.run, DataPlane.counting). Durations are [count,
    nanoseconds]; as in Triton, each request of an onnxruntime call counts that call's compute times."""

    def __init__(self):
        self.last_inference = 0  # milliseconds since the epoch
        self.inference_count = 0  # rows inferred
        self.execution_count = 0  # onnxruntime calls
        self.durations = {name: [0, 0] for name in DURATIONS}
        self.batches: dict[int, dict[str, list[int]]] = {}  # rows of a call → its compute durations

    def finished(self, succeeded: bool, seconds: float) -> None:
        """One inference request answered (or refused, or failed), after `seconds`."""
        add(self.durations["success" if succeeded else "fail"], 1, seconds)
        self.last_inference = int(time.time() * 1000)

    def executed(self, waits: list[float], rows: int, compute: tuple[float, float, float]) -> None:
        """One onnxruntime call for requests that waited `waits` seconds in the queue, `rows` rows in
        all, and took `compute` seconds to gather its input, run and split its output."""
        self.inference_count += rows
        self.execution_count += 1
        for wait in waits:
            add(self.durations["queue"], 1, wait)
        for name, seconds in zip(COMPUTE, compute):
            add(self.durations[name], len(waits), seconds * len(waits))
        batch = self.batches.get(rows)
        if batch is None and len(self.batches) < MAX_BATCH_SIZES:
            batch = self.batches[rows] = {name: [0, 0] for name in COMPUTE}
        if batch is not None:
            for name, seconds in zip(COMPUTE, compute):
                add(batch[name], 1, seconds)

    def to_dict(self, name: str, version: str) -> dict:
        """As Triton's ModelStatistics (grpc_service.proto), in its JSON form."""
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                **{k: duration(v) for k, v in self.durations.items()},
                **{k: duration([0, 0]) for k in NO_CACHE},
            },
            "batch_stats": [
                {"batch_size": size, **{k: duration(v) for k, v in batch.items()}}
                for size, batch in sorted(self.batches.items())
            ],
        }


def add(pair: list[int], count: int, seconds: float) -> None:
    pair[0] += count
    pair[1] += int(seconds * 1e9)


def duration(pair: list[int]) -> dict[str, int]:
    return {"count": pair[0], "ns": pair[1]}
