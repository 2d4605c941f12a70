"""The SGD plan set from the table, the warm-up + cosine schedule, clipping, threads, and the restart of
an epoch whose loss is not finite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.config import RunConfig, builtin_config
from pipeline.run import train_run
from pipeline.training import loop
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.loop import Diverged, train_one_epoch
from pipeline.training.models import build_mlp
from pipeline.training.optimizer import make_optimizer, sgd_step
from pipeline.training.schedule import (
    CLIP_NORM,
    FINAL_LR_SHARE,
    LARGE_HIDDEN,
    MAX_BATCH,
    MIN_BATCH,
    ONE_THREAD_FLOPS,
    SMALL_HIDDEN,
    WIDE_ROWS,
    lr_share,
    plan_training,
)
from tests.conftest import quiet, run_cli


def test_auto_plan_follows_the_table_size():
    small = plan_training(RunConfig(), 300, [8, 32, 1])
    large = plan_training(RunConfig(), 600_000, [8, 32, 1])
    assert small.batch_size == MIN_BATCH and large.batch_size == MAX_BATCH
    assert large.lr > small.lr == pytest.approx(0.05)  # sqrt(batch / 32) scaling
    assert small.epochs > large.epochs  # about the same number of steps: more epochs of a small table
    assert small.patience == small.epochs // 4
    given = plan_training(RunConfig(batch_size=64, lr=0.3, epochs=7, patience=2), 300, [8, 32, 1])
    assert (given.batch_size, given.lr, given.epochs, given.patience) == (64, 0.3, 7, 2)


@pytest.mark.parametrize(
    ("rows", "given", "expected"),
    [(600, [], SMALL_HIDDEN), (WIDE_ROWS * 2, [], LARGE_HIDDEN), (WIDE_ROWS * 2, [8], [8])],
)
def test_hidden_layers_follow_the_training_rows_unless_given(tmp_path, rows, given, expected):
    """A run without `hidden` gets the small network below WIDE_ROWS training rows (60% of the table at the
    default splits) and the large one from there; what it ran is in the report and the checkpoint."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    table = tmp_path / "t.csv"
    np.savetxt(table, np.c_[x, x.sum(axis=1)], delimiter=",", header="a,b,y", comments="", fmt="%.4f")
    config = RunConfig(name="t", data=str(table), target="y", epochs=1, hidden=given)
    report = train_run(config, tmp_path / "runs", False, quiet)
    assert report["config"]["hidden"] == expected
    model, _ = load_checkpoint(tmp_path / "runs" / "t" / "checkpoint.pt")
    assert [layer.out_features for layer in model.mlp if isinstance(layer, torch.nn.Linear)] == [*expected, 1]


def test_lr_warms_up_linearly_then_decays_by_a_cosine():
    plan = plan_training(RunConfig(epochs=50), 3200, [8, 32, 1])
    shares = [lr_share(plan, k) for k in range(plan.total_steps)]
    warm = plan.warmup_steps
    assert warm > 1 and shares[0] == pytest.approx(1 / warm) and shares[warm - 1] == pytest.approx(1.0)
    assert np.all(np.diff(shares[:warm]) > 0) and np.all(np.diff(shares[warm:]) <= 0)
    middle = warm + (plan.total_steps - warm) // 2
    assert shares[middle] == pytest.approx(0.5 * (1 + FINAL_LR_SHARE), abs=0.01)
    assert shares[-1] == pytest.approx(FINAL_LR_SHARE, abs=1e-3)


def test_small_steps_run_on_one_thread_large_ones_on_all():
    small = plan_training(RunConfig(), 1_000_000, [32, 64, 64, 3], threads=2)  # the training bench's shape
    assert small.step_flops < ONE_THREAD_FLOPS and small.threads == 1
    large = plan_training(RunConfig(), 1_000_000, [512, 1024, 1024, 3], threads=2)
    assert large.step_flops >= ONE_THREAD_FLOPS and large.threads == 2


def test_gradient_norm_is_clipped():
    torch.manual_seed(0)
    mlp = build_mlp(4, [8], "relu", 0.0, 1)
    optimizer = make_optimizer(mlp.parameters(), RunConfig(momentum=0.0, weight_decay=0.0), lr=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in mlp.parameters()])
    x, y = torch.full((16, 4), 1e3), torch.full((16, 1), -1e3)  # a huge gradient
    train_one_epoch(mlp, [(x, y, 16)], torch.nn.MSELoss(), optimizer)
    moved = torch.cat([p.detach().flatten() for p in mlp.parameters()]) - before
    assert moved.norm().item() == pytest.approx(CLIP_NORM, rel=1e-4)  # lr 1 x a gradient of norm CLIP_NORM


def test_a_non_finite_epoch_restarts_from_the_last_good_state_at_half_the_rate(tmp_path, monkeypatch):
    original, calls = loop.train_one_epoch, []

    def poisoned(mlp, *args, **kwargs):
        calls.append(kwargs.get("first_step", args[5] if len(args) > 5 else 0))
        loss = original(mlp, *args, **kwargs)
        if len(calls) == 3:  # epoch 3, first try: the weights blow up
            with torch.no_grad():
                for p in mlp.parameters():
                    p.fill_(math.nan)
            return math.nan
        return loss

    monkeypatch.setattr(loop, "train_one_epoch", poisoned)
    lines = []
    config = builtin_config("zoo-mammal", {"epochs": 6, "patience": 6})
    report = train_run(config, tmp_path, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    training, history = report["training"], report["history"]
    assert training["recoveries"] == [{"epoch": 3, "lr_scale": 0.5}]
    assert history["lr"][:2] == [training["lr"]] * 2 and history["lr"][2:] == [training["lr"] / 2] * 4
    assert calls[2] == calls[3]  # epoch 3 ran again from its first step
    assert any("non-finite loss in epoch 3; restarting it" in line for line in lines)
    assert report["epochs_run"] == 6 and all(math.isfinite(v) for v in history["train_loss"])
    weights = torch.load(tmp_path / "zoo-mammal" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_run_that_keeps_diverging_stops_and_says_so(tmp_path):
    with pytest.raises(Diverged, match="training diverged: the loss is not finite in epoch 1"):
        train_run(builtin_config("zoo-mammal", {"epochs": 5, "lr": 1e30}), tmp_path, False, quiet)
    assert not (tmp_path / "zoo-mammal").exists()


def test_sgd_step_is_torch_sgd_step():
    torch.manual_seed(0)
    models = [build_mlp(4, [8], "relu", 0.0, 1) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [make_optimizer(m.parameters(), RunConfig(), lr=0.1) for m in models]
    for _ in range(3):
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        for k, (mlp, optimizer) in enumerate(zip(models, optimizers)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(mlp(x), y).backward()
            sgd_step(optimizer) if k == 0 else optimizer.step()
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)


def test_training_does_not_import_torch_dynamo(tmp_path):
    """Importing torch._dynamo costs about as much as importing torch; a training run never needs it."""
    code = (
        "import sys; from pathlib import Path; from pipeline.config import builtin_config; "
        "from pipeline.run import train_run; "
        f"train_run(builtin_config('zoo-mammal', {{'epochs': 2}}), Path({str(tmp_path)!r}), False, print); "
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')"
    )
    done = run_cli("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "no dynamo"
