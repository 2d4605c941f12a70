"""Mini-batches for the SGD loop, from a table in memory or streamed.

In memory, each epoch draws a seeded permutation of the training rows and gathers it chunk by chunk into
contiguous memory, encoding (preprocessing) each chunk as it goes, so a step is a slice (a view), not a
gather, and no one-hot copy of the whole table ever exists.
Streamed, record batches are read and encoded on a background thread, mixed in a seeded shuffle buffer
and handed over a short queue, so parsing overlaps the SGD steps and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from pipeline.data.readahead import read_ahead

GATHER_ROWS = 1 << 16  # rows gathered into contiguous memory at a time (in-memory epochs)


class MemoryBatches:
    """Mini-batches of rows held in memory. With several processes, the job's training rows are one
    sequence (each process holds its contiguous part); every process draws the same permutation of it,
    global batch k is its k-th slice of `batch_size` rows, and each process steps on the rows of that
    slice it holds (zero or more). So N processes see exactly the global batches one process would."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        rows: np.ndarray,
        encode: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        generator: torch.Generator,
        first: int = 0,
        total: int | None = None,
    ):
        self.x, self.y, self.rows, self.encode = x, y, rows, encode  # rows: the training rows of x
        self.batch_size, self.generator = batch_size, generator  # the global batch
        self.first = first  # `rows` are rows first..first+len(rows)-1 of the job's training rows
        self.total = len(rows) if total is None else total

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """(encoded rows, loss target, rows in the global batch) per step."""
        order = torch.randperm(self.total, generator=self.generator).numpy()
        mine = (order >= self.first) & (order < self.first + len(self.rows))
        local = self.rows[order[mine] - self.first]
        steps = -(-self.total // self.batch_size)
        ends = np.searchsorted(np.flatnonzero(mine), np.arange(1, steps + 1) * self.batch_size)
        starts = np.concatenate([[0], ends[:-1]])
        step = 0
        while step < steps:  # gather a run of whole steps into contiguous memory, then slice it
            last = step
            while last + 1 < steps and ends[last + 1] - starts[step] <= GATHER_ROWS:
                last += 1
            rows = local[starts[step] : ends[last]]
            encoded, target = self.encode(self.x[rows], self.y[rows])
            for k in range(step, last + 1):
                low, high = starts[k] - starts[step], ends[k] - starts[step]
                global_rows = min(self.batch_size, self.total - k * self.batch_size)
                yield encoded[low:high], target[low:high], global_rows
            step = last + 1


class StreamBatches:
    """Mini-batches of a streamed table: this process's training rows in exact `batch_size` steps; with
    several processes every one takes the same number of steps (the longest shard's), stepping on empty
    batches once its rows run out."""

    def __init__(
        self,
        chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
        encode: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        seed: int,
        buffer_rows: int,
        empty: tuple[np.ndarray, np.ndarray],
        shards: list[int] | None = None,
        rank: int = 0,
    ):
        self.chunks, self.encode = chunks, encode  # encode: raw (x, y) → (encoded, loss target)
        self.batch_size, self.seed, self.buffer_rows = batch_size, seed, buffer_rows
        self.empty = empty  # raw (x, y) with no rows, for the steps after this shard's rows run out
        self.shards, self.rank = shards, rank  # training rows of each process

    def shuffled(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Buffers of up to `buffer_rows` training rows, each in a seeded random order, encoded."""
        rng = np.random.default_rng([self.seed, self.rank, epoch])
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

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        size, step = self.batch_size, 0
        left = None  # rows a buffer left over: the start of the next step
        for encoded, target in read_ahead(self.shuffled(epoch)):
            begin = 0
            if left is not None:
                begin = size - len(left[0])
                encoded_step = torch.cat([left[0], encoded[:begin]])
                target_step = torch.cat([left[1], target[:begin]])
                if len(encoded_step) < size:  # a buffer smaller than one step
                    left = (encoded_step, target_step)
                    continue
                yield encoded_step, target_step, self.global_rows(step, size)
                step += 1
            whole = begin + (len(encoded) - begin) // size * size
            for start in range(begin, whole, size):
                yield (
                    encoded[start : start + size],
                    target[start : start + size],
                    self.global_rows(step, size),
                )
                step += 1
            left = (encoded[whole:], target[whole:])
        if left is not None and len(left[0]):
            yield left[0], left[1], self.global_rows(step, len(left[0]))
            step += 1
        if self.shards:
            steps = max(-(-n // size) for n in self.shards)
            nothing = self.encode(*self.empty)
            while step < steps:  # this shard ran out: step on nothing, as the others still step
                yield nothing[0], nothing[1], self.global_rows(step, 0)
                step += 1

    def global_rows(self, step: int, rows: int) -> int:
        """Rows of step `step` over all processes (every shard steps `batch_size` rows at a time)."""
        if not self.shards:
            return rows
        return sum(min(max(n - step * self.batch_size, 0), self.batch_size) for n in self.shards)
