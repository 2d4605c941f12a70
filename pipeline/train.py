"""The SGD training loop: `train_one_epoch`, `evaluate`, `fit` with early stopping on validation loss.

Preprocessing has no trainable parameters, so rows are encoded before they reach the MLP (once for a
table in memory, per buffer for a streamed one: see `pipeline.batches`); a step is the MLP, the loss on
the logits and one SGD step. Validation and test metrics accumulate over batches.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline.batches import MemoryBatches, StreamBatches, read_ahead
from pipeline.config import RunConfig
from pipeline.data import Dataset, StreamingDataset
from pipeline.memory import memory_budget
from pipeline.models import TabularModel
from pipeline.progress import Progress
from pipeline.tasks import TASKS


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)  # the task's main metric, target units
    epoch_seconds: list[float] = field(default_factory=list)  # the training pass alone (no validation)
    best_epoch: int = 0  # 1-based epoch whose weights were kept

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def train_one_epoch(
    mlp: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One pass over (encoded rows, loss target) mini-batches; returns the mean loss."""
    mlp.train()
    total, rows = torch.zeros(()), 0
    for encoded, target in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(mlp(encoded), target)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(encoded)
        rows += len(encoded)
    return total.item() / max(rows, 1)


@torch.no_grad()
def evaluate(
    model: TabularModel, chunks: Iterable[tuple[np.ndarray, np.ndarray]], class_names: list[str]
) -> dict:
    """Loss (on logits, as in training) and the task's metrics over raw (x, y) chunks."""
    model.eval()
    task = TASKS[model.spec.task]
    mean, std = scale_of(model)
    loss_fn = task.make_loss(reduction="sum")
    metrics = task.metrics(class_names)
    loss, rows = 0.0, 0
    for x, y in chunks:
        logits = model.mlp(model.preprocess(torch.from_numpy(x)))
        loss += loss_fn(logits, task.loss_target(torch.from_numpy(y), mean, std)).item()
        outputs = dict(zip(task.output_names, model.head(logits)))
        metrics.update(y, outputs[task.decision].numpy().reshape(len(y), -1)[:, 0])
        rows += len(y)
    return {"loss": loss / max(rows, 1), **metrics.result()}


def scale_of(model: TabularModel) -> tuple[float, float]:
    spec = model.spec
    return (spec.target_mean or [0.0])[0], (spec.target_std or [1.0])[0]


def training_batches(
    model: TabularModel, dataset: Dataset | StreamingDataset, config: RunConfig, generator
) -> MemoryBatches | StreamBatches:
    task = TASKS[model.spec.task]
    mean, std = scale_of(model)

    def encode(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return model.preprocess(torch.from_numpy(x)), task.loss_target(torch.from_numpy(y), mean, std)

    if not dataset.streamed:
        train = dataset.splits["train"]
        return MemoryBatches(dataset.x, dataset.y, train, encode, config.batch_size, generator)
    row_bytes = 4 * (len(dataset.features) + model.preprocess.n_encoded)
    buffer_rows = min(
        max(memory_budget(config.memory_budget) // (8 * row_bytes), 4 * config.batch_size), 1 << 20
    )
    return StreamBatches(lambda: dataset.chunks("train"), encode, config.batch_size, config.seed, buffer_rows)


def validation_chunks(dataset: Dataset | StreamingDataset, split: str = "val"):
    return read_ahead(iter(dataset.chunks(split))) if dataset.streamed else dataset.chunks(split)


def fit(
    model: TabularModel, dataset: Dataset | StreamingDataset, config: RunConfig, progress: bool = True
) -> History:
    """SGD with early stopping: stops after `patience` epochs without a better validation loss and
    restores the best weights."""
    task = TASKS[model.spec.task]
    loss_fn = task.make_loss()
    optimizer = torch.optim.SGD(
        model.mlp.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    batches = training_batches(model, dataset, config, generator)

    history, best_loss, best_state = History(), math.inf, copy.deepcopy(model.state_dict())
    bar = Progress(f"train {config.name}", config.epochs, enabled=progress)
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        train_loss = train_one_epoch(model.mlp, batches.epoch(epoch), loss_fn, optimizer)
        history.epoch_seconds.append(time.perf_counter() - start)
        scores = evaluate(model, validation_chunks(dataset), dataset.class_names)
        history.train_loss.append(train_loss)
        history.val_loss.append(scores["loss"])
        history.val_metric.append(scores[task.main_metric])
        bar.update(
            epoch,
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
