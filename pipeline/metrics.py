"""Test and validation metrics, accumulated over batches and merged over processes: what users of
scikit-learn and LightGBM expect to read.

Classification: accuracy, macro F1, the confusion matrix, log loss and the expected calibration error
(top-class confidence in CALIBRATION_BINS equal-width bins); binary adds ROC AUC and PR AUC (average
precision), from the positive class's probabilities kept per row (4 bytes a row). Regression: RMSE,
MAE and R² in the target's units.
"""

from __future__ import annotations

import numpy as np

CALIBRATION_BINS = 15
EPSILON = 1e-15  # probabilities are clipped here for the log loss, as scikit-learn's log_loss does


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive row scores above a negative one (ties
    count half), from the ranks of the scores (Mann-Whitney U)."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """PR AUC as scikit-learn's average_precision_score: sum over thresholds of precision x recall step."""
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    y_sorted, s_sorted = y[order], score[order]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(y) - 1]  # end of each tie group
    tp = np.cumsum(y_sorted)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / positives
    return float((precision * recall_step).sum())


class ClassificationMetrics:
    """Accumulated over batches (and processes): confusion matrix, log-loss sum, calibration bins and,
    for binary tasks, the positive class's probabilities."""

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        n = len(class_names)
        self.confusion = np.zeros((n, n), dtype=np.int64)  # rows: true class, columns: predicted class
        self.log_loss = 0.0
        self.bins = np.zeros((3, CALIBRATION_BINS))  # per bin: rows, confidence sum, correct rows
        self.scores: list[np.ndarray] = []  # binary: p(positive) per row
        self.truth: list[np.ndarray] = []

    def update(self, y_true: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        n = len(self.class_names)
        y_true = y_true.astype(np.int64)
        y_pred = outputs["label"].reshape(-1).astype(np.int64)
        pairs = y_true * n + y_pred
        self.confusion += np.bincount(pairs, minlength=n * n).reshape(n, n)
        p = outputs["probabilities"].astype(np.float64).reshape(len(y_true), -1)
        if p.shape[1] == 1:  # binary: (batch, 1) p(positive)
            self.scores.append(p[:, 0].astype(np.float32))
            self.truth.append(y_true.astype(np.int8))
            p = np.concatenate([1 - p, p], axis=1)
        self.log_loss -= float(np.log(np.clip(p[np.arange(len(y_true)), y_true], EPSILON, 1.0)).sum())
        confidence = np.nan_to_num(p[np.arange(len(y_true)), y_pred])  # a diverged model's NaN: bin 0
        where = np.minimum((confidence * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
        for row, values in enumerate((np.ones(len(where)), confidence, (y_pred == y_true).astype(float))):
            self.bins[row] += np.bincount(where, weights=values, minlength=CALIBRATION_BINS)

    def merge(self, other: ClassificationMetrics) -> None:
        self.confusion += other.confusion
        self.log_loss += other.log_loss
        self.bins += other.bins
        self.scores += other.scores
        self.truth += other.truth

    def result(self) -> dict:
        confusion, n = self.confusion, len(self.class_names)
        rows = max(int(confusion.sum()), 1)
        tp = np.diag(confusion).astype(float)
        precision = np.divide(tp, confusion.sum(0), out=np.zeros(n), where=confusion.sum(0) > 0)
        recall = np.divide(tp, confusion.sum(1), out=np.zeros(n), where=confusion.sum(1) > 0)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros(n), where=precision + recall > 0
        )
        present = confusion.sum(1) > 0  # macro F1 over the classes that occur in this split
        _, confidence, correct = self.bins
        result = {
            "accuracy": float(tp.sum() / rows),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "log_loss": self.log_loss / rows,
            "calibration_error": float(np.abs(confidence - correct).sum() / rows),
            "confusion_matrix": confusion.tolist(),
            "class_names": list(self.class_names),
        }
        if self.scores:
            y, score = np.concatenate(self.truth), np.concatenate(self.scores)
            result["roc_auc"] = roc_auc(y, score)
            result["pr_auc"] = average_precision(y, score)
        return result


class RegressionMetrics:
    """RMSE, MAE and R² in the target's units, from sums accumulated over batches (and processes)."""

    def __init__(self, class_names: list[str]):
        self.rows, self.squared, self.absolute = 0, 0.0, 0.0
        self.count, self.mean, self.m2 = 0, 0.0, 0.0  # of the true values, merged exactly (Chan et al.)

    def update(self, y_true: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        y_true = y_true.astype(np.float64)
        error = outputs["prediction"].reshape(len(y_true), -1)[:, 0].astype(np.float64) - y_true
        self.rows += len(error)
        self.squared += float((error**2).sum())
        self.absolute += float(np.abs(error).sum())
        if len(y_true):
            mean = float(y_true.mean())
            self.add_moments(len(y_true), mean, float(((y_true - mean) ** 2).sum()))

    def add_moments(self, count: int, mean: float, m2: float) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta**2 * self.count * count / total
        self.count = total

    def merge(self, other: RegressionMetrics) -> None:
        self.rows += other.rows
        self.squared += other.squared
        self.absolute += other.absolute
        if other.count:
            self.add_moments(other.count, other.mean, other.m2)

    def result(self) -> dict:
        rows = max(self.rows, 1)
        return {
            "rmse": float(np.sqrt(self.squared / rows)),
            "mae": self.absolute / rows,
            "r2": float(1 - self.squared / self.m2) if self.m2 > 0 else 0.0,
        }
