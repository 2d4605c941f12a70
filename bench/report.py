"""Timing helpers and table printing shared by the benchmark sections."""

from __future__ import annotations

import time

import numpy as np


def timed_calls(call, n: int) -> np.ndarray:
    """Seconds per call, for `n` calls."""
    times = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    return times


def interleaved(calls: dict, n: int, rounds: int = 5) -> dict[str, np.ndarray]:
    """Per-call seconds of each candidate, measured in alternating rounds so machine noise hits all."""
    samples: dict[str, list] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(timed_calls(call, max(1, n // rounds)))
    return {name: np.concatenate(parts) for name, parts in samples.items()}


def table(title: str, header: tuple, rows: list[tuple]) -> str:
    rows = [tuple(str(v) for v in header), *[tuple(str(v) for v in row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"\n== {title}", *("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows)]
    return "\n".join(lines)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"
