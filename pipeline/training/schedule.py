"""How a run's SGD is set from its table: the batch size, learning rate, epochs and patience the config
leaves at 0 (auto), the learning-rate schedule (linear warm-up, then cosine decay) and the torch threads
the steps run on.

The rules, and why:
- batch: about a sixty-fourth of the training rows, a power of two in [32, 512]: small tables get the
  many small steps they need, large ones steps big enough that Python's per-step cost stops dominating;
- learning rate: 0.05 at batch 32, growing with the square root of the (global) batch, momentum 0.9
  (Nesterov was tried: no better on five tables, worse on one); the gradient's norm is clipped at
  CLIP_NORM, so one bad batch cannot throw the weights far (inputs are standardized and soft-clipped,
  regression targets standardized: see models.py);
- epochs: enough for about STEP_BUDGET SGD steps, in [MIN_EPOCHS, MAX_EPOCHS]; the cosine decay ends at
  the last of them, and early stopping ends a run whose validation loss has not improved for `patience`
  epochs (auto: a quarter of the epochs, at least 10: an eighth stopped diamonds at epoch 41 of 79,
  before the decay's low rates, RMSE 573 against 557 when it ran to the end);
- hidden layers (when the config gives none): one of 32 below WIDE_ROWS training rows, two of 128 from
  there (a table of about 10,000 rows at the default splits). Measured on the tables suite, one run
  each: two of 128 lifted storms from 0.911 to 0.931 accuracy and diamonds from RMSE 563 to 552, covid
  unchanged; on the smaller tables they were as often worse as better (loans 3.92 -> 3.95, credit
  0.809 -> 0.799, wage 37.9 -> 37.5), and the small network's steps are cheaper;
- threads: one, unless a step is more than ONE_THREAD_FLOPS of work: the matrix products of these
  networks are too small to share, and on a busy machine a second OpenMP thread spins and waits for a
  core (measured: a 3,500-row table 10x slower on two threads than on one, beside another process).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

MIN_BATCH, MAX_BATCH = 32, 512
ROWS_PER_STEP_SHARE = 64  # auto batch ~ training rows / 64
BASE_LR, BASE_BATCH = 0.05, 32  # lr at BASE_BATCH; grows with sqrt(batch / BASE_BATCH)
STEP_BUDGET = 4000  # SGD steps an auto-length run aims at
MIN_EPOCHS, MAX_EPOCHS = 20, 200
WARMUP_SHARE = 0.03  # of the run's steps, linear from 0
FINAL_LR_SHARE = 0.01  # the cosine decays to this share of the peak
CLIP_NORM = 1.0  # gradient norm clipped to this before each step
SMALL_HIDDEN, LARGE_HIDDEN, WIDE_ROWS = [32], [128, 128], 6000  # hidden layers from the training rows
ONE_THREAD_FLOPS = 1e9  # FLOPs per step below which the steps run on one thread


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The resolved SGD settings of a run (report.json's "training")."""

    batch_size: int  # per process
    lr: float  # peak, for the global batch
    epochs: int
    patience: int
    steps_per_epoch: int
    warmup_steps: int
    threads: int
    step_flops: float  # forward and backward, one global step

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict:
        return {**asdict(self), "total_steps": self.total_steps}


def auto_batch(train_rows: int) -> int:
    rows = max(train_rows // ROWS_PER_STEP_SHARE, 1)
    return min(max(1 << round(math.log2(rows)), MIN_BATCH), MAX_BATCH)


def auto_hidden(train_rows: int) -> list[int]:
    return list(LARGE_HIDDEN if train_rows >= WIDE_ROWS else SMALL_HIDDEN)


def step_flops(widths: list[int], batch: int) -> float:
    """Multiply-adds of the MLP's layers, times 2 (FLOPs) times 3 (forward, and backward's two products)."""
    return 6.0 * batch * sum(a * b for a, b in itertools.pairwise(widths))


def plan_training(config, train_rows: int, widths: list[int], world: int = 1, threads: int = 1) -> Plan:
    """`config`: a RunConfig (0 = auto for batch_size, lr, epochs, patience); `widths`: the MLP's layer
    widths, input first; `threads`: what the process has now (the most a plan takes)."""
    batch = config.batch_size or max(auto_batch(train_rows) // world, 1)
    global_batch = batch * world
    steps = max(math.ceil(train_rows / global_batch), 1)
    epochs = config.epochs or min(max(math.ceil(STEP_BUDGET / steps), MIN_EPOCHS), MAX_EPOCHS)
    flops = step_flops(widths, global_batch)
    return Plan(
        batch_size=batch,
        lr=config.lr or BASE_LR * math.sqrt(global_batch / BASE_BATCH),
        epochs=epochs,
        patience=config.patience or max(epochs // 4, 10),
        steps_per_epoch=steps,
        warmup_steps=max(round(WARMUP_SHARE * epochs * steps), 1),
        threads=threads if flops >= ONE_THREAD_FLOPS else 1,
        step_flops=flops,
    )


def lr_share(plan: Plan, step: int) -> float:
    """The share of the peak learning rate at global step `step` (0-based): linear warm-up, then a
    cosine down to FINAL_LR_SHARE at the run's last step."""
    if step < plan.warmup_steps:
        return (step + 1) / plan.warmup_steps
    span = max(plan.total_steps - plan.warmup_steps, 1)
    progress = min((step - plan.warmup_steps) / span, 1.0)
    return FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * progress))
