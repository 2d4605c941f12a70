"""Timing helpers and table printing shared by the benchmark sections."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.display import text_table

ROOT = Path(__file__).resolve().parents[1]
# Run by a small interpreter of its own: Linux keeps a process's peak RSS across exec, so a command
# forked straight from the (torch-sized) benchmark process would report that process's size as its own.
MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
out = process.stdout.read()
_, status, usage = os.wait4(process.pid, 0)
seconds = time.perf_counter() - start
sys.stdout.write(out.decode(errors="replace"))
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "seconds": seconds, "kib": usage.ru_maxrss}))
"""


def measure(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, standard output) of one subprocess, from its own rusage."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], cwd=ROOT, env=env, capture_output=True, text=True
    )
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {"status": -1}
    if report["status"] != 0:
        raise RuntimeError(f"{' '.join(command[:4])}… failed: {done.stderr[-2000:]}")
    return report["seconds"], report["kib"] / 1024, "\n".join(lines[:-1])


HOG = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@contextlib.contextmanager
def cpu_hog(core: int = 0):
    """A busy process pinned to one core while the block runs, so a measurement sees a machine where
    another program holds a core (both sides of a comparison run beside it). Yields its pid."""
    hog = subprocess.Popen([sys.executable, "-c", HOG, str(core)])
    try:
        yield hog.pid
    finally:
        hog.kill()
        hog.wait()


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
    return f"\n== {title}\n{text_table([header, *rows])}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"
