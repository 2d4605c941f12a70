"""The task table: everything that differs between the binary, multiclass and regression networks.

Each row says how many outputs the last layer has, which loss trains it (always on the logits, before
the final activation), what the deployed graph outputs and how a decision is made. Code elsewhere looks
the task up here instead of branching on its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from contract.repository import OUTPUT_DATATYPES, TASK_OUTPUTS


def binary_outputs(logits: torch.Tensor, threshold: float, mean: torch.Tensor, std: torch.Tensor):
    probabilities = torch.sigmoid(logits)  # (batch, 1)
    return logits, probabilities, (probabilities[:, 0] >= threshold).long()


def multiclass_outputs(logits: torch.Tensor, threshold: float, mean: torch.Tensor, std: torch.Tensor):
    return logits, torch.softmax(logits, dim=-1), logits.argmax(dim=-1)


def regression_outputs(logits: torch.Tensor, threshold: float, mean: torch.Tensor, std: torch.Tensor):
    return (logits * std + mean,)  # (batch, n_targets) in the target's own units


class ClassificationMetrics:
    """Accuracy, macro F1 and the confusion matrix, accumulated over batches (and processes)."""

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        n = len(class_names)
        self.confusion = np.zeros((n, n), dtype=np.int64)  # rows: true class, columns: predicted class

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        n = len(self.class_names)
        pairs = y_true.astype(np.int64) * n + y_pred.astype(np.int64)
        self.confusion += np.bincount(pairs, minlength=n * n).reshape(n, n)

    def merge(self, other: ClassificationMetrics) -> None:
        self.confusion += other.confusion

    def result(self) -> dict:
        confusion, n = self.confusion, len(self.class_names)
        tp = np.diag(confusion).astype(float)
        precision = np.divide(tp, confusion.sum(0), out=np.zeros(n), where=confusion.sum(0) > 0)
        recall = np.divide(tp, confusion.sum(1), out=np.zeros(n), where=confusion.sum(1) > 0)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros(n), where=precision + recall > 0
        )
        present = confusion.sum(1) > 0  # macro F1 over the classes that occur in this split
        return {
            "accuracy": float(tp.sum() / max(confusion.sum(), 1)),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "confusion_matrix": confusion.tolist(),
            "class_names": list(self.class_names),
        }


class RegressionMetrics:
    """RMSE, MAE and R² in the target's units, from sums accumulated over batches (and processes)."""

    def __init__(self, class_names: list[str]):
        self.rows, self.squared, self.absolute = 0, 0.0, 0.0
        self.count, self.mean, self.m2 = 0, 0.0, 0.0  # of the true values, merged exactly (Chan et al.)

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        y_true = y_true.astype(np.float64)
        error = y_pred.astype(np.float64) - y_true
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


@dataclass(frozen=True, kw_only=True)
class Task:
    name: str
    is_classifier: bool
    output_names: tuple[str, ...]  # graph outputs, in the order `outputs` returns them
    make_loss: Callable[[], nn.Module]  # called on logits (and the target from `loss_target`)
    outputs: Callable  # (logits, threshold, target mean, target std) -> tuple of graph outputs
    decision: str  # the output holding the decision: label, or prediction
    metrics: Callable  # (class_names) -> an accumulator: update(y_true, decision), merge, result()
    main_metric: str  # printed in progress and summaries
    width: Callable[[int, int], int]  # (n_classes, n_targets) -> width of the last Linear layer
    loss_target: Callable  # (y, target mean, target std) -> the target in the form the loss takes


NUMPY_TYPES = {"FP32": np.float32, "INT64": np.int64}
OUTPUT_DTYPES = {name: NUMPY_TYPES[datatype] for name, datatype in OUTPUT_DATATYPES.items()}

TASKS: dict[str, Task] = {
    "binary": Task(
        name="binary",
        is_classifier=True,
        output_names=TASK_OUTPUTS["binary"],
        make_loss=nn.BCEWithLogitsLoss,
        outputs=binary_outputs,
        decision="label",
        metrics=ClassificationMetrics,
        main_metric="accuracy",
        width=lambda n_classes, n_targets: 1,
        loss_target=lambda y, mean, std: y.float().unsqueeze(1),
    ),
    "multiclass": Task(
        name="multiclass",
        is_classifier=True,
        output_names=TASK_OUTPUTS["multiclass"],
        make_loss=nn.CrossEntropyLoss,
        outputs=multiclass_outputs,
        decision="label",
        metrics=ClassificationMetrics,
        main_metric="accuracy",
        width=lambda n_classes, n_targets: n_classes,
        loss_target=lambda y, mean, std: y.long(),
    ),
    "regression": Task(
        name="regression",
        is_classifier=False,
        output_names=TASK_OUTPUTS["regression"],
        make_loss=nn.MSELoss,
        outputs=regression_outputs,
        decision="prediction",
        metrics=RegressionMetrics,
        main_metric="rmse",
        width=lambda n_classes, n_targets: n_targets,
        loss_target=lambda y, mean, std: ((y.double() - mean) / std).float().unsqueeze(1),
    ),
}
