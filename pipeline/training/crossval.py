"""k-fold cross-validation (`--cv K`) for tables too small for one held-out split to say much.

The test split stays held out. The other rows (training and validation) are dealt into K folds,
stratified by class for a classifier (seeded); fold k's model trains on the other folds, with fold k as
its validation rows (early stopping), and is scored on fold k. Each metric is reported as mean ± sd over
the folds; then the final model trains on all those rows for the folds' median best epoch count (its
"validation" curve is then over rows it trains on: progress, not an estimate).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from pipeline.config import RunConfig
from pipeline.data.dataset import Dataset
from pipeline.errors import PipelineError
from pipeline.training.loop import evaluate, fit
from pipeline.training.models import ModelSpec, TabularModel

SCALAR_METRICS = ("accuracy", "macro_f1", "rmse", "mae", "r2", "loss")


def fold_numbers(y: np.ndarray, k: int, seed: int, classifier: bool) -> np.ndarray:
    """Each row's fold, 0..k-1: a seeded shuffle dealt round-robin (within each class, when stratified)."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if classifier else [np.arange(len(y))]
    start = 0
    for group in groups:
        order = rng.permutation(group)
        folds[order] = (start + np.arange(len(order))) % k
        start += len(order)  # the next class continues the deal, so fold sizes stay even
    return folds


def view(dataset: Dataset, train: np.ndarray, val: np.ndarray) -> Dataset:
    """The same encoded rows with other training and validation rows (the test rows unchanged)."""
    splits = {"train": train, "val": val, "test": dataset.splits["test"]}
    rows = {name: len(index) for name, index in splits.items()}
    return dataclasses.replace(dataset, splits=splits, rows=rows, train_first=0, train_total=len(train))


def cross_validate(dataset, spec: ModelSpec, config: RunConfig, log, job) -> tuple[dict, Dataset, RunConfig]:
    """Score K fold models; returns the report's "cv" entry, and the dataset and config of the final
    fit (all non-test rows, the folds' median best epoch)."""
    if not isinstance(dataset, Dataset) or job.world > 1:
        raise PipelineError(
            "--cv needs the table in memory on one process (no --nproc, within --memory-budget)"
        )
    rows = np.sort(np.concatenate([dataset.splits["train"], dataset.splits["val"]]))
    folds = fold_numbers(dataset.y[rows], config.cv, config.seed, dataset.plan.classifier)
    if np.bincount(folds, minlength=config.cv).min() < 1:
        raise PipelineError(f"--cv {config.cv}: only {len(rows)} training rows; use fewer folds")
    scores, best_epochs, sizes = [], [], []
    for k in range(config.cv):
        fold = view(dataset, rows[folds != k], rows[folds == k])
        sizes.append([fold.rows["train"], fold.rows["val"]])
        torch.manual_seed(config.seed)
        model = TabularModel(spec)
        history = fit(model, fold, config, progress=False, log=lambda *_: None)
        scores.append(evaluate(model, fold.chunks("val"), dataset.class_names))
        best_epochs.append(history.best_epoch)
    metrics = {
        name: {
            "mean": float(np.mean([s[name] for s in scores])),
            "sd": float(np.std([s[name] for s in scores], ddof=1)),
            "folds": [float(s[name]) for s in scores],
        }
        for name in SCALAR_METRICS
        if name in scores[0]
    }
    epochs = max(1, int(np.median(best_epochs)))
    shown = ", ".join(
        f"{name} {m['mean']:.3f} ± {m['sd']:.3f}" for name, m in metrics.items() if name != "loss"
    )
    log(f"cross-validation over {config.cv} folds of {len(rows)} rows: {shown}")
    log(f"final fit: all {len(rows)} training rows for {epochs} epochs (the folds' median best epoch)")
    report = {
        "folds": config.cv,
        "rows": len(rows),
        "metrics": metrics,
        "best_epochs": best_epochs,
        "sizes": sizes,  # per fold: [training rows, scored rows]
    }
    final = dataclasses.replace(config, epochs=epochs, patience=epochs)
    return report, view(dataset, rows, dataset.splits["val"]), final
