"""Permutation feature importance on the test split: how much the test loss (and the task's main metric)
worsens when one feature's column is shuffled, breaking its link to the target while keeping its
distribution. Computed on up to IMPORTANCE_ROWS test rows of this process, one seeded shuffle per
feature; report.json gets the table, importance.png the bar chart.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.tasks import TASKS
from pipeline.training.models import TabularModel

IMPORTANCE_ROWS = 20_000


@torch.no_grad()
def scores(model: TabularModel, x: np.ndarray, y: np.ndarray, class_names: list[str]) -> tuple[float, float]:
    """(loss, main metric) of `model` on raw rows (x, y), the loss as in training (on the logits)."""
    task = TASKS[model.spec.task]
    std = model.spec.target_std or [1.0]
    mean = model.spec.target_mean or [0.0]
    logits = model.mlp(model.preprocess(torch.from_numpy(x)))
    target = task.loss_target(torch.from_numpy(y), mean[0], std[0])
    loss = task.make_loss()(logits, target).item()
    metrics = task.metrics(class_names)
    metrics.update(y, {n: v.numpy() for n, v in zip(task.output_names, model.head(logits))})
    return loss, metrics.result()[task.main_metric]


def permutation_importance(model: TabularModel, chunks, class_names: list[str], seed: int = 0) -> list[dict]:
    """One row per feature, most important first: the loss increase and the main metric's change when
    that feature is shuffled."""
    model.eval()
    xs, ys, rows = [], [], 0
    for x, y in chunks:
        xs.append(x[: IMPORTANCE_ROWS - rows])
        ys.append(y[: IMPORTANCE_ROWS - rows])
        rows += len(xs[-1])
        if rows >= IMPORTANCE_ROWS:
            break
    if not rows:
        return []
    x, y = np.concatenate(xs), np.concatenate(ys)
    base_loss, base_metric = scores(model, x, y, class_names)
    rng = np.random.default_rng(seed)
    table = []
    for j, feature in enumerate(model.spec.features):
        shuffled = x.copy()
        shuffled[:, j] = x[rng.permutation(len(x)), j]
        loss, metric = scores(model, shuffled, y, class_names)
        table.append(
            {
                "feature": feature.name,
                "loss_increase": loss - base_loss,
                "metric_change": metric - base_metric,
            }
        )
    return sorted(table, key=lambda row: -row["loss_increase"])
