"""The report's metrics against scikit-learn's, and their merge over batches (and processes)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.metrics import ClassificationMetrics, average_precision, roc_auc


def binary_rows(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.01, 0.99).round(2)  # rounded: many ties
    return y, p


def test_roc_auc_and_average_precision_match_scikit_learn():
    y, p = binary_rows()
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(sk.average_precision_score(y, p), abs=1e-12)


def test_binary_metrics_merged_over_batches_equal_the_whole():
    y, p = binary_rows()
    whole, parts = ClassificationMetrics(["no", "yes"]), ClassificationMetrics(["no", "yes"])
    outputs = {"probabilities": p.reshape(-1, 1), "label": (p >= 0.5).astype(np.int64)}
    whole.update(y, outputs)
    for half in (slice(0, 200), slice(200, None)):
        other = ClassificationMetrics(["no", "yes"])
        other.update(y[half], {k: v[half] for k, v in outputs.items()})
        parts.merge(other)
    a, b = whole.result(), parts.result()
    assert a["confusion_matrix"] == b["confusion_matrix"]
    numbers = [k for k, v in a.items() if isinstance(v, float)]
    assert len(numbers) == 6 and {k: a[k] for k in numbers} == pytest.approx({k: b[k] for k in numbers})
    assert a["log_loss"] == pytest.approx(sk.log_loss(y, p), rel=1e-9)
    assert a["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p))


def test_calibration_error_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1.0, 200_000)
    y_calibrated = (rng.uniform(size=p.size) < p).astype(np.int64)  # right exactly p of the time
    metrics = ClassificationMetrics(["a", "b"])
    metrics.update(y_calibrated, {"probabilities": p.reshape(-1, 1), "label": np.ones(p.size, np.int64)})
    assert metrics.result()["calibration_error"] < 0.01
    overconfident = ClassificationMetrics(["a", "b"])
    y_coin = rng.integers(0, 2, p.size)  # right half the time whatever it says
    overconfident.update(y_coin, {"probabilities": p.reshape(-1, 1), "label": np.ones(p.size, np.int64)})
    assert overconfident.result()["calibration_error"] == pytest.approx(p.mean() - 0.5, abs=0.01)


def test_multiclass_log_loss_matches_scikit_learn():
    rng = np.random.default_rng(2)
    p = rng.dirichlet([1, 1, 1], 300)
    y = rng.integers(0, 3, 300)
    metrics = ClassificationMetrics(["a", "b", "c"])
    metrics.update(y, {"probabilities": p, "label": p.argmax(1)})
    result = metrics.result()
    assert result["log_loss"] == pytest.approx(sk.log_loss(y, p), rel=1e-9)
    assert "roc_auc" not in result
