"""Date and boolean features through export: the graph derives a date's year and cycles itself, so
ONNX must match eager torch on the edge dates (1970, before it, leap days, 2038 and after, 2100 and
9999, missing) by the same parity rule as every other part of the graph."""

from __future__ import annotations

import numpy as np
import torch

from contract.features import Feature
from export.onnx import export_onnx
from export.verify import verify
from pipeline.checks import parity
from pipeline.training.dates import SECONDS_PER_YEAR
from pipeline.training.models import ModelSpec, TabularModel


def test_date_features_export_and_match_eager_on_edge_dates(tmp_path):
    features = [
        Feature(name="temp", kind="numeric", mean=12.0, std=5.0),
        Feature(name="when", kind="date", mean=1.6e9, std=8 * SECONDS_PER_YEAR, missing=3),
        Feature(name="holiday", kind="boolean", mean=0.3, std=0.46),
        Feature(name="city", kind="categorical", categories=[0.0, 1.0, 2.0], labels=["a", "b", "c"]),
    ]
    spec = ModelSpec(
        task="multiclass", features=features, hidden=[16], activation="relu", dropout=0.0, n_outputs=3
    )
    torch.manual_seed(0)
    model = TabularModel(spec).eval()
    rows = parity.parity_rows(features, np.empty((0, len(features)), np.float32))
    dates = rows[:, 1]
    assert set(np.float32(parity.DATE_EDGES)) <= set(dates) and np.isnan(dates).any()
    onnx_file = export_onnx(model, torch.from_numpy(rows[:7]), tmp_path / "model.onnx", {})
    (cpu,) = [r for r in verify(model, onnx_file, rows) if r.backend == "onnxruntime-cpu"]
    assert cpu.status == "passed" and all(d.passed for d in cpu.outputs)
    # The encoded date columns themselves: nine per date, none NaN even where the date is missing.
    with torch.inference_mode():
        encoded = model.preprocess(torch.from_numpy(rows))
    assert encoded.shape[1] == 1 + 1 + 9 + 3 and torch.isfinite(encoded).all()
