"""The SGD training loop: `train_one_epoch`, `evaluate`, `fit` with early stopping on validation loss.

Preprocessing has no trainable parameters, so rows are encoded before they reach the MLP (per gathered
chunk for a table in memory, per buffer for a streamed one: see `pipeline.training.batches`); a step is
the MLP, the loss on the logits and one SGD step. Validation and test metrics accumulate over batches.

On several processes the MLP is wrapped in DistributedDataParallel (gradients are averaged over the
processes); each process's loss is its rows' summed loss over the global batch's rows, times the world
size, so the averaged gradient is exactly the gradient of the global batch's mean loss. Validation
metrics are merged over the processes, so every one of them makes the same early-stopping decision.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline.config import RunConfig
from pipeline.data.base import SplitTable
from pipeline.data.dataset import Dataset
from pipeline.data.memory import memory_budget
from pipeline.data.streaming import StreamingDataset
from pipeline.distributed import SINGLE, Dist
from pipeline.errors import PipelineError
from pipeline.tasks import TASKS
from pipeline.training.batches import MemoryBatches, StreamBatches
from pipeline.training.models import TabularModel
from pipeline.training.optimizer import make_optimizer, sgd_step
from pipeline.training.progress import Progress
from pipeline.training.resume import Resume
from pipeline.training.schedule import CLIP_NORM, lr_share, plan_training

MAX_RECOVERIES = 4  # restarts of an epoch after a non-finite loss, each at half the learning rate


@dataclass(kw_only=True)
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)  # the task's main metric, target units
    epoch_seconds: list[float] = field(default_factory=list)  # the training pass alone (no validation)
    lr: list[float] = field(default_factory=list)  # peak learning rate of each epoch's schedule
    best_epoch: int = 0  # 1-based epoch whose weights were kept
    plan: dict = field(default_factory=dict)  # the resolved SGD settings (schedule.Plan)
    recoveries: list[dict] = field(default_factory=list)  # epochs restarted after a non-finite loss
    stopped: str = ""  # why the run ended: "epochs", "early stopping"

    def to_dict(self) -> dict:
        return copy.deepcopy(self.__dict__)


class Diverged(PipelineError):
    """The loss stayed non-finite after MAX_RECOVERIES restarts: nothing is published."""


def train_one_epoch(
    mlp: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, int]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    job: Dist = SINGLE,
    lr_at: Callable[[int], float] | None = None,
    first_step: int = 0,
    clip: float | None = CLIP_NORM,
) -> float:
    """One pass over (encoded rows, loss target, rows of the global batch) steps; returns the mean loss
    over every process's rows, or NaN as soon as a step's loss is not finite (the pass stops there).
    `lr_at(step)`: the learning rate of global step `first_step + k` (default: the optimizer's own);
    `clip`: the gradient norm is clipped to it before each step."""
    mlp.train()
    summed = type(loss_fn)(reduction="sum", **loss_options(loss_fn))
    total, rows = torch.zeros((), dtype=torch.float64), 0
    parameters = [p for p in mlp.parameters() if p.requires_grad]
    for k, (encoded, target, global_rows) in enumerate(batches):
        if lr_at is not None:
            lr = lr_at(first_step + k)
            for group in optimizer.param_groups:
                group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        if job.world == 1:
            loss = loss_fn(mlp(encoded), target)
            total += loss.detach() * len(encoded)
        else:  # DDP averages gradients over processes: scale this process's share of the global mean
            per_row = target.shape[1] if target.dim() > 1 else 1
            local = summed(mlp(encoded), target)
            loss = local * (job.world / (global_rows * per_row))
            total += local.detach() / per_row
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(parameters, clip, foreach=True)
        sgd_step(optimizer)
        rows += len(encoded)
        if job.world == 1 and not torch.isfinite(total):
            return math.nan  # the weights are lost now: the caller restarts from the last good state
    total, rows = job.total(np.array([total.item(), rows], dtype=np.float64)).tolist()
    return total / max(rows, 1.0)


def loss_options(loss_fn: nn.Module) -> dict:
    """The class weights a loss was built with, to build its summed twin the same way."""
    if isinstance(loss_fn, nn.BCEWithLogitsLoss) and loss_fn.pos_weight is not None:
        return {"pos_weight": loss_fn.pos_weight}
    if isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.weight is not None:
        return {"weight": loss_fn.weight}
    return {}


@torch.no_grad()
def evaluate(
    model: TabularModel,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    class_names: list[str],
    job: Dist = SINGLE,
) -> dict:
    """Loss (on logits, as in training) and the task's metrics over raw (x, y) chunks, merged over the
    processes."""
    model.eval()
    task = TASKS[model.spec.task]
    mean, std = scale_of(model)
    loss_fn = task.make_loss(reduction="sum")
    metrics = task.metrics(class_names)
    device = next(model.mlp.parameters()).device
    loss, rows = 0.0, 0
    for x, y in chunks:
        logits = model.mlp(model.preprocess(torch.from_numpy(x).to(device)))
        target = task.loss_target(torch.from_numpy(y), mean, std).to(device)
        loss += loss_fn(logits, target).item() / (target.shape[1] if target.dim() > 1 else 1)
        outputs = {n: v.cpu().numpy() for n, v in zip(task.output_names, model.head(logits))}
        metrics.update(y, outputs)
        rows += len(y)
    if job.world > 1:
        parts = job.gather((loss, rows, metrics))
        loss, rows = sum(p[0] for p in parts), sum(p[1] for p in parts)
        for part in parts[1:]:
            parts[0][2].merge(part[2])
        metrics = parts[0][2]
    return {"loss": loss / max(rows, 1), **metrics.result()}


def class_weights(model: TabularModel, dataset: SplitTable, config: RunConfig, job: Dist = SINGLE) -> dict:
    """The loss's class weights: none, or `balanced` (each class weighs rows / (classes x its rows), so
    every class carries the same total weight; binary: the positive rows weigh negatives / positives)."""
    task = TASKS[model.spec.task]
    if config.class_weight == "none" or not task.is_classifier:
        return {}
    counts = np.zeros(max(dataset.n_classes, 2), dtype=np.float64)
    for _, y in dataset.chunks("train"):
        counts += np.bincount(y, minlength=len(counts))[: len(counts)]
    counts = np.maximum(job.total(counts), 1.0)
    if task.name == "binary":
        return {"pos_weight": torch.tensor([counts[0] / counts[1]], dtype=torch.float32)}
    return {"weight": torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)}


def scale_of(model: TabularModel) -> tuple[float, float]:
    spec = model.spec
    return (spec.target_mean or [0.0])[0], (spec.target_std or [1.0])[0]


def memory_batches(
    model: TabularModel, dataset: Dataset, config: RunConfig, generator, job: Dist, encode
) -> MemoryBatches:
    train = dataset.splits["train"]
    first, total = dataset.train_first, dataset.train_total or len(train)
    global_batch = config.batch_size * job.world
    return MemoryBatches(dataset.x, dataset.y, train, encode, global_batch, generator, first, total)


def stream_batches(
    model: TabularModel, dataset: StreamingDataset, config: RunConfig, generator, job: Dist, encode
) -> StreamBatches:
    row_bytes = 4 * (len(dataset.features) + model.preprocess.n_encoded)
    budget = memory_budget(config.memory_budget)
    buffer_rows = min(max(budget // (8 * row_bytes), 4 * config.batch_size), 1 << 20)
    empty = (
        np.empty((0, len(dataset.features)), np.float32),
        np.empty(0, np.int64 if dataset.plan.classifier else np.float64),
    )
    shards = dataset.local_train if job.world > 1 else None
    return StreamBatches(
        lambda: dataset.read_split("train"),
        encode,
        config.batch_size,
        config.seed,
        buffer_rows,
        empty,
        shards,
        job.rank,
    )


@dataclass(frozen=True)
class Draw:
    """How mini-batches are drawn from one kind of table."""

    batches: Callable  # (model, dataset, config, generator, job, encode) -> .epoch(k) iterable


DRAWS = {
    Dataset: Draw(memory_batches),
    StreamingDataset: Draw(stream_batches),
}


def encoder(model: TabularModel, device):
    """Raw (x, y) → (encoded rows, loss target) on `device`: the model's preprocessing, no gradients."""
    task = TASKS[model.spec.task]
    mean, std = scale_of(model)

    def encode(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            encoded = model.preprocess(torch.from_numpy(x).to(device))
            return encoded, task.loss_target(torch.from_numpy(y), mean, std).to(device)

    return encode


def fit(
    model: TabularModel,
    dataset: SplitTable,
    config: RunConfig,
    progress: bool = True,
    job: Dist = SINGLE,
    resume: Resume | None = None,
    log=print,
) -> History:
    """SGD on the plan set from the table (`pipeline.training.schedule`), with early stopping: stops
    after `patience` epochs without a better validation loss and restores the best weights. An epoch
    whose loss is not finite is restarted from the previous epoch's state at half the learning rate
    (said, and recorded in `History.recoveries`); after MAX_RECOVERIES restarts the run stops with
    `Diverged`."""
    task = TASKS[model.spec.task]
    loss_fn = task.make_loss(**class_weights(model, dataset, config, job)).to(job.device)
    model.to(job.device)  # NCCL: this process's GPU; gloo: the CPU
    widths = [model.preprocess.n_encoded, *model.spec.hidden, model.spec.n_outputs]
    plan = plan_training(config, dataset.rows["train"], widths, job.world, torch.get_num_threads())
    config = dataclasses.replace(
        config, batch_size=plan.batch_size, lr=plan.lr, epochs=plan.epochs, patience=plan.patience
    )
    trained = model.mlp
    if job.world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model.mlp)
    optimizer = make_optimizer(model.mlp.parameters(), config, plan.lr)
    generator = torch.Generator().manual_seed(config.seed)
    encode = encoder(model, job.device)
    batches = DRAWS[type(dataset)].batches(model, dataset, config, generator, job, encode)

    history, best_loss, best_state = History(plan=plan.to_dict()), math.inf, copy.deepcopy(model.state_dict())
    first_epoch, stopped, lr_scale = 1, False, 1.0
    state = resume.load(job) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best_loss, best_state = History(**state["history"]), state["best_loss"], state["best_state"]
        first_epoch, stopped, lr_scale = state["epoch"] + 1, state["stopped"], state["lr_scale"]
        log(f"resuming {config.name} after epoch {state['epoch']} (torchrun restarted the job)")
    bar = Progress(f"train {config.name}", config.epochs, enabled=progress and job.is_main)
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        epoch = first_epoch
        while epoch <= config.epochs and not stopped:
            good = copy.deepcopy((model.state_dict(), optimizer.state_dict(), generator.get_state()))
            start = time.perf_counter()
            train_loss = train_one_epoch(
                trained,
                batches.epoch(epoch),
                loss_fn,
                optimizer,
                job,
                lambda step, scale=lr_scale: plan.lr * scale * lr_share(plan, step),
                (epoch - 1) * plan.steps_per_epoch,
            )
            seconds = time.perf_counter() - start
            finite = math.isfinite(train_loss)
            scores = evaluate(model, dataset.chunks("val"), dataset.class_names, job) if finite else {}
            if not (finite and math.isfinite(scores["loss"])):
                if len(history.recoveries) == MAX_RECOVERIES:
                    raise Diverged(
                        f"{config.name}: training diverged: the loss is not finite in epoch {epoch} even at "
                        f"{lr_scale:g} x the learning rate {plan.lr:.3g}; nothing was published (lower --lr)"
                    )
                model.load_state_dict(good[0])
                optimizer.load_state_dict(good[1])
                generator.set_state(good[2])
                lr_scale /= 2
                history.recoveries.append({"epoch": epoch, "lr_scale": lr_scale})
                log(
                    f"{config.name}: non-finite loss in epoch {epoch}; restarting it from the state "
                    f"after epoch {epoch - 1} at {lr_scale:g} x the learning rate"
                )
                continue
            history.epoch_seconds.append(seconds)
            history.train_loss.append(train_loss)
            history.val_loss.append(scores["loss"])
            history.val_metric.append(scores[task.main_metric])
            history.lr.append(plan.lr * lr_scale)
            bar.update(
                epoch,
                loss=f"{train_loss:.4f}",
                val_loss=f"{scores['loss']:.4f}",
                **{f"val_{task.main_metric}": f"{scores[task.main_metric]:.4f}"},
            )
            if scores["loss"] < best_loss:
                best_loss, history.best_epoch = scores["loss"], epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - history.best_epoch >= config.patience:
                stopped, history.stopped = True, "early stopping"
            if resume is not None:
                resume.save(
                    job,
                    {
                        "epoch": epoch,
                        "stopped": stopped,
                        "lr_scale": lr_scale,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "history": history.to_dict(),
                        "best_loss": best_loss,
                        "best_state": best_state,
                    },
                )
            epoch += 1
    finally:
        torch.set_num_threads(threads)
        bar.close()
    history.stopped = history.stopped or "epochs"
    model.load_state_dict(best_state)
    model.cpu().eval()  # checkpoints and exports take the CPU module
    return history
