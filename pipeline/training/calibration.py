"""After training, on the validation split: temperature scaling of a classifier's logits (kept when it
lowers the validation log loss) and, with `--threshold auto`, the binary threshold with the best F1.

The temperature is folded into the last Linear layer (weights and bias divided by T), so the exported
graph is the same network with other numbers: `logits`, `probabilities` and the parity checks need
nothing new, and the deployed model is the calibrated one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.distributed import SINGLE, Dist
from pipeline.training.models import TabularModel

TEMPERATURES = (0.05, 20.0)  # the search range of T
MIN_GAIN = 1e-4  # relative lowering of the validation log loss for T to be applied


@torch.no_grad()
def validation_logits(model: TabularModel, chunks, job: Dist = SINGLE) -> tuple[np.ndarray, np.ndarray]:
    """(logits, y) of every validation row, gathered over the processes."""
    model.eval()
    parts = [(model.mlp(model.preprocess(torch.from_numpy(x))).double().numpy(), y) for x, y in chunks]
    parts = [p for group in job.gather(parts) for p in group]
    if not parts:
        return np.empty((0, model.spec.n_outputs)), np.empty(0, np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def log_loss(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    z = logits / temperature
    if z.shape[1] == 1:  # binary: BCE on the one logit
        z = np.concatenate([np.zeros_like(z), z], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(T, validation log loss at T = 1, at T): golden-section search over log T; T = 1 unless it lowers
    the log loss by MIN_GAIN or more."""
    before = log_loss(logits, y)
    if not len(y):
        return 1.0, before, before
    low, high = (math.log(t) for t in TEMPERATURES)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if log_loss(logits, y, math.exp(a)) < log_loss(logits, y, math.exp(b)):
            high = b
        else:
            low = a
    temperature = math.exp((low + high) / 2)
    after = log_loss(logits, y, temperature)
    if after > before * (1 - MIN_GAIN):
        return 1.0, before, before
    return temperature, before, after


@torch.no_grad()
def apply_temperature(model: TabularModel, temperature: float) -> None:
    """Divide the logits by `temperature`, inside the network (the last Linear layer)."""
    last = model.mlp[-1]
    last.weight.div_(temperature)
    last.bias.div_(temperature)


def best_threshold(logits: np.ndarray, y: np.ndarray) -> float:
    """The binary threshold on p(positive) with the highest F1 on these rows (0.5 when there are none)."""
    if not len(y) or y.sum() == 0:
        return 0.5
    p = 1 / (1 + np.exp(-logits[:, 0]))
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    tp = np.cumsum(y_sorted)
    predicted = np.arange(1, len(y) + 1)
    f1 = 2 * tp / (predicted + y.sum())
    last = np.r_[np.flatnonzero(p_sorted[1:] != p_sorted[:-1]), len(y) - 1]  # cut only between values
    k = last[np.argmax(f1[last])]
    below = p_sorted[k + 1] if k + 1 < len(y) else 0.0
    threshold = float((p_sorted[k] + below) / 2)  # midway to the next row: labels at p >= threshold
    return min(max(threshold, 1e-6), 1 - 1e-6)
