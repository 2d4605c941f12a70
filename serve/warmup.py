"""Warming a loaded model version before it serves (Triton's `model_warmup`): serve/repository.py runs
`warm_up` on every version it loads, on the loader thread, before the version is reported ready or
swapped in; a version whose warm-up fails is refused with the reason, as a bad file is.

What needs warming is onnxruntime's, measured on the built-in models (2 cores): a session's first run
costs about 40 times a steady one (0.4 ms against 10 µs at one row), and a batch size larger than any
run before costs 1.5 to 3 times its steady time once (the CPU arena grows; see the README's "Warm-up").
The batcher (serve/batching.py) merges requests into any size up to max_batch_rows, too many to run
each; one run at every power of two up to max_batch_rows (and max_batch_rows itself) leaves the sizes
in between within their steady time. The rows are missing values in every feature (NaN: the graph
imputes the training means), so any exported model takes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from serve.errors import ModelLoadError
from serve.model import Model


@dataclass(frozen=True)
class WarmUp:
    """What one version's warm-up ran."""

    sizes: tuple[int, ...]  # rows of each onnxruntime call, in order
    seconds: float

    def describe(self) -> str:
        return f"{len(self.sizes)} batch sizes, 1 to {self.sizes[-1]} rows, in {self.seconds * 1e3:.1f} ms"


def batch_sizes(max_batch_rows: int) -> tuple[int, ...]:
    """1, 2, 4, … up to max_batch_rows, and max_batch_rows itself."""
    sizes, rows = [], 1
    while rows < max_batch_rows:
        sizes.append(rows)
        rows *= 2
    return (*sizes, max(1, max_batch_rows))


def warm_up(model: Model, max_batch_rows: int) -> WarmUp:
    """Run `model` once at every batch size of `batch_sizes`; ModelLoadError when a run fails."""
    start = time.perf_counter()
    sizes = batch_sizes(max_batch_rows)
    for rows in sizes:
        try:
            model.run(np.full((rows, model.n_features), np.nan, np.float32))
        except Exception as exc:  # onnxruntime's own exception types
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"warm-up failed at {rows} rows: {reason}") from None
    return WarmUp(sizes, time.perf_counter() - start)
