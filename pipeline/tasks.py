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
from pipeline.metrics import ClassificationMetrics, RegressionMetrics


def binary_outputs(logits: torch.Tensor, threshold: float, mean: torch.Tensor, std: torch.Tensor):
    probabilities = torch.sigmoid(logits)  # (batch, 1)
    return logits, probabilities, (probabilities[:, 0] >= threshold).long()


def multiclass_outputs(logits: torch.Tensor, threshold: float, mean: torch.Tensor, std: torch.Tensor):
    return logits, torch.softmax(logits, dim=-1), logits.argmax(dim=-1)


def regression_outputs(logits: torch.Tensor, threshold: float, mean: torch.Tensor, std: torch.Tensor):
    return (logits * std + mean,)  # (batch, n_targets) in the target's own units


@dataclass(frozen=True, kw_only=True)
class Task:
    name: str
    is_classifier: bool
    output_names: tuple[str, ...]  # graph outputs, in the order `outputs` returns them
    make_loss: Callable[[], nn.Module]  # called on logits (and the target from `loss_target`)
    outputs: Callable  # (logits, threshold, target mean, target std) -> tuple of graph outputs
    decision: str  # the output holding the decision: label, or prediction
    metrics: Callable  # (class_names) -> an accumulator: update(y_true, outputs), merge, result()
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
