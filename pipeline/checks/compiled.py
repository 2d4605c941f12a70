"""The torch.compile stage: compile the trained eager module, prove it matches eager, time both."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import torch

from pipeline.checks import parity
from pipeline.errors import PipelineError
from pipeline.tasks import OUTPUT_DTYPES
from pipeline.training.models import TabularModel


def torch_predict(module, output_names: tuple[str, ...], device: str = "cpu"):
    """A `predict(batch) -> {name: array}` over an eager or compiled module."""

    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = module(torch.from_numpy(batch).to(device))
        return {name: value.cpu().numpy() for name, value in zip(output_names, outputs)}

    return predict


def compile_model(model: TabularModel):
    """`torch.compile` a handle on the eager module (the module itself stays the one to save)."""
    if not (os.environ.get("CXX") or any(shutil.which(c) for c in ("c++", "g++", "clang++"))):
        raise PipelineError("torch.compile needs a C++ compiler (g++ or clang++) and none was found")
    return torch.compile(model, dynamic=True)


def median_latency_us(predict, batch: np.ndarray, repeats: int = 100) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def check_compiled(model: TabularModel, rows: np.ndarray, log=print) -> dict:
    """Compile, compare with eager on `rows` at batch sizes 1, 7 and 1024, and time batch 1.
    Raises `parity.ParityError` on a mismatch."""
    names = model.output_names
    eager = torch_predict(model, names)
    stage_start = start = time.perf_counter()
    try:
        compiled = torch_predict(compile_model(model), names)
        compiled_outputs = parity.run_batches(compiled, rows)
    except PipelineError:
        raise
    except Exception as exc:  # inductor reports a missing or broken toolchain many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"torch.compile failed (is a working C++ compiler installed?): {first}") from None
    compile_seconds = time.perf_counter() - start
    diffs = parity.compare(
        parity.run_batches(eager, rows),
        compiled_outputs,
        {n: OUTPUT_DTYPES[n] for n in names},
        threshold=model.spec.threshold,
        allowance=parity.run_batches(parity.roundoff(model), rows),
    )
    if not all(d.passed for d in diffs):
        raise parity.ParityError("torch.compile", diffs)
    one = rows[:1]
    eager_us, compiled_us = [], []
    for _ in range(3):  # interleaved, so machine noise hits both alike
        eager_us.append(median_latency_us(eager, one))
        compiled_us.append(median_latency_us(compiled, one))
    report = {
        "compile_seconds": compile_seconds,
        "eager_batch1_us": float(np.median(eager_us)),
        "compiled_batch1_us": float(np.median(compiled_us)),
        "parity": [d.to_dict() for d in diffs],
        "rows_compared": len(rows),
        "check_seconds": time.perf_counter() - stage_start,  # the whole stage: compile, compare, time
    }
    worst = max(d.max_abs for d in diffs)
    log(
        f"  compiled in {compile_seconds:.1f}s (check {report['check_seconds']:.1f}s); matches eager "
        f"(max abs diff {worst:.2g}); batch-1 latency "
        f"eager {report['eager_batch1_us']:.0f} us, compiled {report['compiled_batch1_us']:.0f} us"
    )
    return report
