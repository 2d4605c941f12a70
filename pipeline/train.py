"""The SGD training loop: `train_one_epoch`, `evaluate`, `fit` with early stopping on validation loss.

Preprocessing has no trainable parameters, so each split is encoded once up front; a training step is an
index slice of tensors already in memory, the MLP, the loss on the logits, and one SGD step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import RunConfig
from pipeline.data import Dataset
from pipeline.models import TabularModel
from pipeline.tasks import TASKS


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)  # the task's main metric, target units
    best_epoch: int = 0  # 1-based epoch whose weights were kept

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def train_one_epoch(
    mlp: nn.Module,
    encoded: torch.Tensor,
    target: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over the (encoded) training rows in a seeded random order; returns the mean loss."""
    mlp.train()
    order = torch.randperm(len(encoded), generator=generator)
    total = torch.zeros(())
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(mlp(encoded[batch]), target[batch])
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(batch)
    return total.item() / len(order)


@torch.no_grad()
def evaluate(model: TabularModel, features: np.ndarray, y: np.ndarray, class_names: list[str]) -> dict:
    """Loss (on logits, as in training) and the task's metrics on raw rows."""
    model.eval()
    task = TASKS[model.spec.task]
    mean, std = scale_of(model)
    logits = model.mlp(model.preprocess(torch.from_numpy(features)))
    loss = task.make_loss()(logits, task.loss_target(torch.from_numpy(y), mean, std)).item()
    outputs = dict(zip(task.output_names, model.head(logits)))
    decision = outputs[task.decision].numpy().reshape(len(y), -1)[:, 0] if len(y) else np.array([])
    return {"loss": loss, **task.metrics(y, decision, class_names)}


def scale_of(model: TabularModel) -> tuple[float, float]:
    spec = model.spec
    return (spec.target_mean or [0.0])[0], (spec.target_std or [1.0])[0]


def fit(model: TabularModel, dataset: Dataset, config: RunConfig, progress: bool = True) -> History:
    """SGD with early stopping: stops after `patience` epochs without a better validation loss and
    restores the best weights."""
    task = TASKS[model.spec.task]
    mean, std = scale_of(model)
    train, val = dataset.splits["train"], dataset.splits["val"]
    with torch.no_grad():
        encoded = model.preprocess(torch.from_numpy(dataset.x[train]))
    target = task.loss_target(torch.from_numpy(dataset.y[train]), mean, std)
    loss_fn = task.make_loss()
    optimizer = torch.optim.SGD(
        model.mlp.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)

    history, best_loss, best_state = History(), math.inf, copy.deepcopy(model.state_dict())
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"train {config.name}",
        unit="epoch",
        disable=not progress,
        leave=False,
    )
    for epoch in bar:
        train_loss = train_one_epoch(
            model.mlp, encoded, target, loss_fn, optimizer, config.batch_size, generator
        )
        scores = evaluate(model, dataset.x[val], dataset.y[val], dataset.class_names)
        history.train_loss.append(train_loss)
        history.val_loss.append(scores["loss"])
        history.val_metric.append(scores[task.main_metric])
        bar.set_postfix(
            loss=f"{train_loss:.4f}",
            val_loss=f"{scores['loss']:.4f}",
            **{f"val_{task.main_metric}": f"{scores[task.main_metric]:.4f}"},
        )
        if not math.isfinite(train_loss):
            break  # diverged: keep the best weights seen so far
        if scores["loss"] < best_loss:
            best_loss, history.best_epoch = scores["loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - history.best_epoch >= config.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history
