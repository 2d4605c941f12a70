"""What a split table warns about before anyone trusts its metrics: held-out splits too small for a
stable metric, and a feature that alone predicts the target almost perfectly (a leak: an identifier in
outcome order, a value known only after the outcome).

The leak check is one nearest-value predictor per feature, fitted on the training rows and scored on the
validation rows: each distinct training value predicts its majority class (classification) or its mean
target (regression), and a validation value takes the prediction of the nearest training value (a
missing value is a value of its own). It costs a sort per feature, on at most LEAK_ROWS rows per split.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.base import SplitTable

MIN_METRIC_ROWS = 30  # fewer held-out rows than this: one row moves accuracy by more than 3 points
LEAK_ROWS = 200_000  # rows per split the leak check looks at
MIN_LEAK_ROWS = 30  # fewer validation rows than this cannot tell a leak from luck
LEAK_SCORE = 0.98  # accuracy or R² from one feature alone at which it is named
LEAK_SHARE = 0.8  # ... when it also removes this share of the majority-class guess's errors


def small_splits(dataset: SplitTable, cv: int, log) -> list[str]:
    """Warn when validation or test holds too few rows for a stable metric; returns the splits named."""
    small = [name for name in ("val", "test") if dataset.rows[name] < MIN_METRIC_ROWS]
    if small:
        shown = ", ".join(f"{'validation' if s == 'val' else s} {dataset.rows[s]}" for s in small)
        step = 1 / max(min(dataset.rows[s] for s in small), 1)
        advice = "" if cv else "; --cv 5 reports each metric as mean ± sd over 5 folds"
        log(
            f"warning: too few held-out rows for a stable metric ({shown} rows; one row moves accuracy by "
            f"{step:.2f}), so the metrics vary from seed to seed{advice}"
        )
    return small


def stacked(chunks, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` rows of `chunks`; none at all on a process whose shard holds no rows of the split
    (with several processes, a Parquet file of one row group is all rank 0's)."""
    xs, ys, total = [np.empty((0, 0), np.float32)], [np.empty(0)], 0
    for x, y in chunks:
        xs.append(x[: limit - total])
        ys.append(y[: limit - total])
        total += len(xs[-1])
        if total >= limit:
            break
    return np.concatenate(xs[1:] or xs), np.concatenate(ys[1:] or ys)


def nearest_value_predictions(
    train: np.ndarray, y: np.ndarray, val: np.ndarray, n_classes: int
) -> np.ndarray:
    """Each validation value's prediction from the training rows with the nearest value (see module)."""
    missing = np.finfo(np.float64).max  # NaN is a value of its own, far from every number
    train = np.where(np.isnan(train), missing, train.astype(np.float64))
    val = np.where(np.isnan(val), missing, val.astype(np.float64))
    values, inverse = np.unique(train, return_inverse=True)
    if n_classes:
        counts = np.zeros((len(values), n_classes))
        np.add.at(counts, (inverse, y.astype(np.int64)), 1)
        per_value = counts.argmax(axis=1)
    else:
        per_value = np.bincount(inverse, weights=y) / np.bincount(inverse)
    right = np.searchsorted(values, val).clip(0, len(values) - 1)
    left = (right - 1).clip(0, len(values) - 1)
    nearest = np.where(np.abs(values[left] - val) <= np.abs(values[right] - val), left, right)
    return per_value[nearest]


def find_leaks(dataset: SplitTable, target: str, log) -> list[dict]:
    """The features that alone predict the target almost perfectly on the validation rows, each named
    in a warning; returned for report.json."""
    if dataset.rows["val"] < MIN_LEAK_ROWS:
        return []
    x_train, y_train = stacked(dataset.chunks("train"), LEAK_ROWS)
    x_val, y_val = stacked(dataset.chunks("val"), LEAK_ROWS)
    if len(y_val) < MIN_LEAK_ROWS or not len(y_train):
        return []
    classifier = dataset.plan.classifier
    n_classes = dataset.n_classes if classifier else 0
    if classifier:
        metric = "accuracy"
        guess = np.bincount(y_train.astype(np.int64), minlength=n_classes).argmax()
        baseline = float(np.mean(y_val == guess))
    else:
        metric, baseline = "R²", 0.0
        spread = float(np.sum((y_val - y_val.mean()) ** 2)) or 1.0
    leaks = []
    for j, feature in enumerate(dataset.features):
        predicted = nearest_value_predictions(x_train[:, j], y_train, x_val[:, j], n_classes)
        if classifier:
            score = float(np.mean(predicted == y_val))
        else:
            score = 1.0 - float(np.sum((y_val - predicted) ** 2)) / spread
        if score >= LEAK_SCORE and score - baseline >= LEAK_SHARE * (1.0 - baseline):
            leaks.append({"feature": feature.name, "metric": metric, "score": score, "baseline": baseline})
            guessed = f"majority class {baseline:.3f}" if classifier else "the mean 0"
            log(
                f"warning: column {feature.name!r} alone predicts {target!r} almost perfectly on the "
                f"validation rows ({metric} {score:.3f}; {guessed}): a leak? (an identifier in outcome "
                f"order, or a value known only after the outcome); leave it out with --ignore {feature.name}"
            )
    return leaks
