"""In-process inference: the serve runtime's predict() vs raw InferenceSession.run vs torch eager vs
torch.compile, latency at batch 1 and rows/s at batch 4096, for each built-in model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.report import interleaved, table, us
from pipeline.checks import parity
from pipeline.checks.compiled import compile_model
from pipeline.training.checkpoint import load_checkpoint
from serve.model import Model


def candidates(model_dir: Path, run_dir: Path, batch: np.ndarray) -> dict:
    runtime = Model.load(model_dir)
    session = runtime.session
    names = [o.name for o in session.get_outputs()]
    eager, _ = load_checkpoint(run_dir / "checkpoint.pt")
    compiled = compile_model(eager)
    tensor = torch.from_numpy(batch)

    def torch_call(module):
        def call():
            with torch.inference_mode():
                module(tensor)

        return call

    calls = {
        "serve predict()": lambda: runtime.predict(batch),
        "raw session.run": lambda: session.run(names, {"features": batch}),
        "torch eager": torch_call(eager),
        "torch.compile": torch_call(compiled),
    }
    calls["torch.compile"]()  # compile outside the timing
    return calls


def run(repository: Path, runs_dir: Path, names: list[str], calls: int, big_calls: int) -> tuple[dict, str]:
    results, rows = {}, []
    for name in names:
        model, payload = load_checkpoint(runs_dir / name / "checkpoint.pt")
        pool = parity.parity_rows(model.spec.features, payload["held_out"].numpy(), n_random=4096)
        one, big = pool[-1:], pool[-4096:]
        latency = interleaved(candidates(repository / name, runs_dir / name, one), calls)
        throughput = interleaved(candidates(repository / name, runs_dir / name, big), big_calls, rounds=3)
        result = {}
        for backend, times in latency.items():
            result[backend] = {
                "batch1_median_us": float(np.median(times) * 1e6),
                "batch1_p99_us": float(np.percentile(times, 99) * 1e6),
                "batch4096_rows_per_s": float(4096 / np.median(throughput[backend])),
            }
        predict, raw = result["serve predict()"], result["raw session.run"]
        result["ratios"] = {
            "predict_over_raw_batch1": predict["batch1_median_us"] / raw["batch1_median_us"],
            "eager_over_predict_batch1": result["torch eager"]["batch1_median_us"]
            / predict["batch1_median_us"],
        }
        results[name] = result
        for backend in latency:
            r = result[backend]
            rows.append(
                (
                    name,
                    backend,
                    us(r["batch1_median_us"] / 1e6),
                    us(r["batch1_p99_us"] / 1e6),
                    f"{r['batch4096_rows_per_s'] / 1e6:.2f}M",
                    f"{r['batch1_median_us'] / predict['batch1_median_us']:.2f}x",
                )
            )
    text = table(
        "in-process inference (batch 1 latency, batch 4096 throughput)",
        ("model", "backend", "b1 median us", "b1 p99 us", "b4096 rows/s", "b1 vs predict()"),
        rows,
    )
    return results, text
