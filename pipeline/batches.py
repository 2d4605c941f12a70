"""Mini-batches for the SGD loop, from a table in memory or streamed.

In memory, each epoch draws a seeded permutation of the training rows and gathers it chunk by chunk into
contiguous memory, encoding (preprocessing) each chunk as it goes, so a step is a slice (a view), not a
gather, and no one-hot copy of the whole table ever exists.
Streamed, record batches are read and encoded on a background thread, mixed in a seeded shuffle buffer
and handed over a short queue, so parsing overlaps the SGD steps and memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

GATHER_ROWS = 1 << 16  # rows gathered into contiguous memory at a time (in-memory epochs)


class MemoryBatches:
    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        rows: np.ndarray,
        encode: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        generator: torch.Generator,
    ):
        self.x, self.y, self.rows, self.encode = x, y, rows, encode  # rows: the training rows of x
        self.batch_size, self.generator = batch_size, generator

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.rows[torch.randperm(len(self.rows), generator=self.generator).numpy()]
        step = max(GATHER_ROWS // self.batch_size, 1) * self.batch_size
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            encoded, target = self.encode(self.x[rows], self.y[rows])
            for begin in range(0, len(rows), self.batch_size):
                yield encoded[begin : begin + self.batch_size], target[begin : begin + self.batch_size]


class StreamBatches:
    def __init__(
        self,
        chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
        encode: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        seed: int,
        buffer_rows: int,
    ):
        self.chunks, self.encode = chunks, encode  # encode: raw (x, y) → (encoded, loss target)
        self.batch_size, self.seed, self.buffer_rows = batch_size, seed, buffer_rows

    def shuffled(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Buffers of up to `buffer_rows` training rows, each in a seeded random order, encoded."""
        rng = np.random.default_rng([self.seed, epoch])
        parts, rows = [], 0
        with torch.no_grad():  # grad mode is per thread: this runs on the reader thread
            for x, y in self.chunks():
                parts.append((x, y))
                rows += len(x)
                if rows >= self.buffer_rows:
                    yield self.mix(parts, rng)
                    parts, rows = [], 0
            if parts:
                yield self.mix(parts, rng)

    def mix(self, parts, rng) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        order = rng.permutation(len(x))
        return self.encode(x[order], y[order])

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for encoded, target in read_ahead(self.shuffled(epoch)):
            for begin in range(0, len(encoded), self.batch_size):
                yield encoded[begin : begin + self.batch_size], target[begin : begin + self.batch_size]


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate `items` on a background thread, at most `depth` items ahead of the consumer. An error in
    the thread is raised in the consumer; a consumer that stops early stops the thread."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                handoff.get_nowait()
            except queue.Empty:
                thread.join(0.05)
