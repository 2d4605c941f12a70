"""Dynamic batching: concurrent requests to one model are merged into one onnxruntime call.

Requests queue per model version: each version has its own session, so a batch never mixes two, and a
request queued before a swap is answered by the version it was queued for. A flush runs at the end of
the current event-loop turn (max_delay_us = 0) or after max_delay_us, or at once when max_batch_rows are
waiting. Each caller gets exactly its own rows back (outputs are split by the row counts in queue
order). A bounded queue answers 503 when full.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from serve.errors import QueueFull
from serve.metrics import InferenceStatistics
from serve.model import Model


@dataclass(kw_only=True)
class BatchingConfig:
    enabled: bool = True  # merge concurrent requests
    max_batch_rows: int = 1024  # rows per onnxruntime call, at most (a larger request runs alone)
    max_delay_us: int = 0  # how long the first request waits for company; 0: end of this loop turn
    max_queue: int = 2048  # queued requests per model version before 503 (gRPC: RESOURCE_EXHAUSTED)


class Batcher:
    def __init__(self, model: Model, config: BatchingConfig, metrics):
        self.model, self.config = model, config
        self.queue_time = metrics.queue_time.labels(model.name)
        self.batch_rows = metrics.batch_rows.labels(model.name)
        self.statistics = InferenceStatistics()  # Triton's, of this version
        self.pending: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self.pending_rows = 0
        self.scheduled = False

    async def submit(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs of the model for `features` (already validated)."""
        if not self.config.enabled:
            return self.run([(features, None, time.perf_counter())])[0]
        if len(self.pending) >= self.config.max_queue:
            raise QueueFull(f"model {self.model.name!r} queue is full ({self.config.max_queue} requests)")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((features, future, time.perf_counter()))
        self.pending_rows += len(features)
        if self.pending_rows >= self.config.max_batch_rows:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            if self.config.max_delay_us:
                loop.call_later(self.config.max_delay_us / 1e6, self.flush)
            else:
                loop.call_soon(self.flush)
        return await future

    def flush(self) -> None:
        self.scheduled = False
        while self.pending:
            batch, rows = [], 0
            while self.pending and (
                not batch or rows + len(self.pending[0][0]) <= self.config.max_batch_rows
            ):
                item = self.pending.popleft()
                batch.append(item)
                rows += len(item[0])
            self.pending_rows -= rows
            try:
                results = self.run(batch)
            except Exception as exc:  # onnxruntime failed on this batch: every caller in it hears why
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _), result in zip(batch, results):
                if not future.done():  # the caller may have gone away
                    future.set_result(result)

    def run(self, batch: list) -> list[dict[str, np.ndarray]]:
        """One onnxruntime call for the whole batch, split back per request."""
        start = time.perf_counter()
        waits = [start - queued for _, _, queued in batch]
        for wait in waits:
            self.queue_time.observe(wait)
        features = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
        gathered = time.perf_counter()
        outputs = self.model.run(features)
        computed = time.perf_counter()
        self.batch_rows.observe(len(features))
        if len(batch) == 1:
            results = [outputs]
        else:
            bounds = np.cumsum([len(b[0]) for b in batch])[:-1]
            split = {name: np.split(value, bounds) for name, value in outputs.items()}
            results = [{name: parts[k] for name, parts in split.items()} for k in range(len(batch))]
        end = time.perf_counter()
        self.statistics.executed(
            waits, len(features), (gathered - start, computed - gathered, end - computed)
        )
        return results
