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
from pipeline.tasks import TASKS
from pipeline.training.batches import MemoryBatches, StreamBatches
from pipeline.training.models import TabularModel
from pipeline.training.progress import Progress
from pipeline.training.resume import Resume

COMPILE_ROWS = 200_000  # training rows from which compiling the step may pay for its seconds
PROBE_STEPS = 30  # timed steps per candidate when choosing between eager and compiled


@dataclass(kw_only=True)
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)  # the task's main metric, target units
    epoch_seconds: list[float] = field(default_factory=list)  # the training pass alone (no validation)
    best_epoch: int = 0  # 1-based epoch whose weights were kept

    def to_dict(self) -> dict:
        return copy.deepcopy(self.__dict__)


def make_optimizer(parameters, config: RunConfig) -> torch.optim.SGD:
    """SGD with the config's learning rate, momentum and L2; the fused kernel updates every parameter
    in one call (measured faster per step than the foreach and per-parameter forms on these sizes)."""
    return torch.optim.SGD(
        parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True
    )


def training_step(mlp: nn.Module, loss_fn: nn.Module, optimizer, probe: list, rows: int, job: Dist = SINGLE):
    """`loss_of(encoded, target)`: the loss on the MLP's logits, eager, or compiled with torch.compile
    (forward and backward each become one compiled graph, for full batches; a last, shorter batch runs
    eager). Compiling costs seconds, so it is tried only for tables of COMPILE_ROWS training rows or
    more, and kept only when timed steps on `probe` (a few real batches) show it faster; the weights and
    optimizer state are restored after the timing. A compile that fails falls back to eager."""

    def eager(encoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss_fn(mlp(encoded), target)

    if rows < COMPILE_ROWS or job.world > 1 or not probe:
        return eager
    size = len(probe[0][0])
    compiled_loss = torch.compile(eager, dynamic=False)

    def compiled(encoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return compiled_loss(encoded, target) if len(encoded) == size else eager(encoded, target)

    saved = copy.deepcopy((mlp.state_dict(), optimizer.state_dict(), torch.get_rng_state()))
    try:
        seconds = {
            name: step_seconds(step, optimizer, probe)
            for name, step in (("compiled", compiled), ("eager", eager))
        }
    except Exception:  # inductor reports a missing or broken toolchain many ways: train eager
        seconds = {"eager": 0.0}
    finally:
        mlp.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
    return compiled if seconds.get("compiled", math.inf) < seconds["eager"] else eager


def step_seconds(step, optimizer, probe: list) -> float:
    """Median seconds of a training step over `probe`, after one untimed pass (compiles, warms caches)."""
    times = []
    for timed in (False, True):
        for encoded, target in probe:
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            step(encoded, target).backward()
            optimizer.step()
            if timed:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def train_one_epoch(
    mlp: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, int]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    job: Dist = SINGLE,
    step=None,
) -> float:
    """One pass over (encoded rows, loss target, rows of the global batch) steps; returns the mean loss
    over every process's rows. `step`: the loss function of `training_step` (default: eager)."""
    mlp.train()
    loss_of = step or (lambda encoded, target: loss_fn(mlp(encoded), target))
    summed = type(loss_fn)(reduction="sum")
    total, rows = torch.zeros((), dtype=torch.float64), 0
    for encoded, target, global_rows in batches:
        optimizer.zero_grad(set_to_none=True)
        if job.world == 1:
            loss = loss_of(encoded, target)
            total += loss.detach() * len(encoded)
        else:  # DDP averages gradients over processes: scale this process's share of the global mean
            per_row = target.shape[1] if target.dim() > 1 else 1
            local = summed(mlp(encoded), target)
            loss = local * (job.world / (global_rows * per_row))
            total += local.detach() / per_row
        loss.backward()
        optimizer.step()
        rows += len(encoded)
    total, rows = job.total(np.array([total.item(), rows], dtype=np.float64)).tolist()
    return total / max(rows, 1.0)


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
        outputs = dict(zip(task.output_names, model.head(logits)))
        metrics.update(y, outputs[task.decision].cpu().numpy().reshape(len(y), -1)[:, 0])
        rows += len(y)
    if job.world > 1:
        parts = job.gather((loss, rows, metrics))
        loss, rows = sum(p[0] for p in parts), sum(p[1] for p in parts)
        for part in parts[1:]:
            parts[0][2].merge(part[2])
        metrics = parts[0][2]
    return {"loss": loss / max(rows, 1), **metrics.result()}


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


def memory_probe(dataset: Dataset, config: RunConfig, encode, steps: int = PROBE_STEPS) -> list:
    """The first training rows as `steps` encoded batches, to time step candidates on (no shuffling:
    the epochs' random streams are untouched)."""
    if dataset.rows["train"] < COMPILE_ROWS:
        return []
    rows = dataset.splits["train"][: steps * config.batch_size]
    encoded, target = encode(dataset.x[rows], dataset.y[rows])
    size = config.batch_size
    return [(encoded[k : k + size], target[k : k + size]) for k in range(0, len(rows) - size + 1, size)]


@dataclass(frozen=True)
class Draw:
    """How mini-batches are drawn from one kind of table, and the batches a compiled step is timed on."""

    batches: Callable  # (model, dataset, config, generator, job, encode) -> .epoch(k) iterable
    probe: Callable  # (dataset, config, encode) -> list of encoded batches (empty: never compile)


DRAWS = {
    Dataset: Draw(memory_batches, memory_probe),
    StreamingDataset: Draw(stream_batches, lambda dataset, config, encode: []),  # one pass costs a read
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
    """SGD with early stopping: stops after `patience` epochs without a better validation loss and
    restores the best weights."""
    task = TASKS[model.spec.task]
    loss_fn = task.make_loss()
    model.to(job.device)  # NCCL: this process's GPU; gloo: the CPU
    trained = model.mlp
    if job.world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model.mlp)
    optimizer = make_optimizer(model.mlp.parameters(), config)
    generator = torch.Generator().manual_seed(config.seed)
    draw = DRAWS[type(dataset)]
    encode = encoder(model, job.device)
    batches = draw.batches(model, dataset, config, generator, job, encode)
    probe = draw.probe(dataset, config, encode)
    step = training_step(model.mlp, loss_fn, optimizer, probe, dataset.rows["train"], job)

    history, best_loss, best_state = History(), math.inf, copy.deepcopy(model.state_dict())
    first_epoch, stopped = 1, False
    state = resume.load(job) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best_loss, best_state = History(**state["history"]), state["best_loss"], state["best_state"]
        first_epoch, stopped = state["epoch"] + 1, state["stopped"]
        log(f"resuming {config.name} after epoch {state['epoch']} (torchrun restarted the job)")
    bar = Progress(f"train {config.name}", config.epochs, enabled=progress and job.is_main)
    for epoch in range(first_epoch, config.epochs + 1):
        if stopped:
            break
        start = time.perf_counter()
        train_loss = train_one_epoch(trained, batches.epoch(epoch), loss_fn, optimizer, job, step)
        history.epoch_seconds.append(time.perf_counter() - start)
        scores = evaluate(model, dataset.chunks("val"), dataset.class_names, job)
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
            stopped = True  # diverged: keep the best weights seen so far
        elif scores["loss"] < best_loss:
            best_loss, history.best_epoch = scores["loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - history.best_epoch >= config.patience:
            stopped = True
        if resume is not None:
            resume.save(
                job,
                {
                    "epoch": epoch,
                    "stopped": stopped,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history.to_dict(),
                    "best_loss": best_loss,
                    "best_state": best_state,
                },
            )
    bar.close()
    model.load_state_dict(best_state)
    model.cpu().eval()  # checkpoints and exports take the CPU module
    return history
