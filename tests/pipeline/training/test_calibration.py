"""Temperature scaling, the automatic threshold, class weights and permutation importance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contract.features import Feature
from pipeline.training.calibration import apply_temperature, best_threshold, fit_temperature, log_loss
from pipeline.training.importance import permutation_importance
from pipeline.training.models import ModelSpec, TabularModel


def calibrated_logits(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 1))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z[:, 0]))).astype(np.int64)
    return z, y


def test_temperature_undoes_overconfident_logits():
    z, y = calibrated_logits()
    temperature, before, after = fit_temperature(3 * z, y)  # three times too confident
    assert temperature == pytest.approx(3, rel=0.05) and after < before
    assert after == pytest.approx(log_loss(z, y), rel=1e-3)
    assert fit_temperature(z, y)[0] == pytest.approx(1.0, rel=0.05)  # calibrated already: about 1


def model_of(features: list[Feature], task="binary", n_outputs=1) -> TabularModel:
    spec = ModelSpec(
        task=task, features=features, hidden=[4], activation="relu", dropout=0.0, n_outputs=n_outputs
    )
    torch.manual_seed(0)
    return TabularModel(spec)


def test_temperature_is_folded_into_the_exported_network():
    model = model_of([Feature(name="a", kind="numeric"), Feature(name="b", kind="numeric")]).eval()
    x = torch.randn(9, 2)
    logits = model(x)[0]
    apply_temperature(model, 2.5)
    torch.testing.assert_close(model(x)[0], logits / 2.5)
    torch.testing.assert_close(model(x)[1], torch.sigmoid(logits / 2.5))


def test_auto_threshold_has_the_best_f1_of_any_threshold():
    z, y = calibrated_logits(2000, seed=3)
    z = z - 2.0  # a rare positive class: the best threshold is below 0.5
    threshold = best_threshold(z, y)
    p = 1 / (1 + np.exp(-z[:, 0]))

    def f1(t):
        predicted = p >= t
        tp = (predicted & (y == 1)).sum()
        return 2 * tp / (predicted.sum() + y.sum())

    assert threshold < 0.5
    assert f1(threshold) >= max(f1(t) for t in np.unique(p)) - 1e-12


def test_permutation_importance_ranks_the_feature_the_model_uses_first():
    features = [Feature(name=name, kind="numeric") for name in ("noise", "signal", "other")]
    model = model_of(features, task="regression")
    with torch.no_grad():  # prediction = relu(signal) - relu(-signal) = signal
        for p in model.mlp.parameters():
            p.zero_()
        model.mlp[0].weight[0, 1], model.mlp[0].weight[1, 1] = 1.0, -1.0
        model.mlp[2].weight[0, 0], model.mlp[2].weight[0, 1] = 1.0, -1.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype(np.float32)
    y = x[:, 1].astype(np.float64)
    table = permutation_importance(model, [(x, y)], [])
    assert table[0]["feature"] == "signal"
    assert table[0]["loss_increase"] > 1.0 and table[0]["metric_change"] > 1.0  # RMSE grows
    assert all(abs(row["loss_increase"]) < 1e-9 for row in table[1:])
