"""Training against scikit-learn's MLPClassifier / MLPRegressor (same hidden sizes, SGD, learning rate,
momentum, L2, batch size and epochs, same splits and encoded features), and a 1,000,000-row scale case:
rows/s of this project's loop vs scikit-learn's `fit` (its fastest SGD path)."""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings

import numpy as np
import torch

from bench.report import table
from pipeline.config import RunConfig, builtin_config
from pipeline.data.load import load_dataset
from pipeline.run import train_run
from pipeline.tasks import TASKS
from pipeline.training.batches import MemoryBatches
from pipeline.training.loop import train_one_epoch
from pipeline.training.models import build_mlp
from pipeline.training.optimizer import make_optimizer
from pipeline.training.schedule import lr_share, plan_training


def quiet(*args):
    pass


def sklearn_model(config, epochs: int):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if TASKS[config.task].is_classifier else MLPRegressor
    return cls(
        hidden_layer_sizes=tuple(config.hidden),
        activation="relu",
        solver="sgd",
        learning_rate_init=config.lr,
        momentum=config.momentum,
        nesterovs_momentum=False,
        alpha=config.weight_decay,
        batch_size=config.batch_size,
        max_iter=epochs,
        shuffle=True,
        random_state=config.seed,
        n_iter_no_change=epochs + 1,
        tol=0.0,
    )


def sklearn_run(config, epochs: int) -> tuple[float, float]:
    """(test metric, seconds): accuracy, or RMSE in target units."""
    from sklearn.exceptions import ConvergenceWarning

    from pipeline.training.models import Preprocess

    data = load_dataset(config, quiet)
    with torch.no_grad():
        encoded = Preprocess(data.features)(torch.from_numpy(data.x)).numpy()
    train, test = data.splits["train"], data.splits["test"]
    model = sklearn_model(config, epochs)
    y = data.y.astype(np.float64)
    mean, std = (y[train].mean(), y[train].std()) if not TASKS[config.task].is_classifier else (0.0, 1.0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # batch_size clipped to a small training split
        model.fit(encoded[train], data.y[train] if mean == 0.0 and std == 1.0 else (y[train] - mean) / std)
    seconds = time.perf_counter() - start
    predicted = model.predict(encoded[test])
    if TASKS[config.task].is_classifier:
        return float((predicted == data.y[test]).mean()), seconds
    return float(np.sqrt(((predicted * std + mean - y[test]) ** 2).mean())), seconds


def run(names: list[str], seeds: list[int], runs_dir, scale_rows: int) -> tuple[dict, str]:
    results, rows = {}, []
    for name in names:
        ours, theirs, our_s, their_s = [], [], [], []
        for seed in seeds:
            config = builtin_config(name, {"seed": seed})
            report = train_run(config, runs_dir / f"seed{seed}", progress=False, log=quiet)
            metric = TASKS[config.task].main_metric
            ours.append(report["test_metrics"][metric])
            our_s.append(report["train_seconds"])
            ran = dataclasses.replace(  # the batch size and rate our run planned from the table
                config,
                batch_size=report["config"]["batch_size"],
                lr=report["config"]["lr"],
                hidden=report["config"]["hidden"],
            )
            value, seconds = sklearn_run(ran, report["epochs_run"])  # the epochs we actually ran
            theirs.append(value)
            their_s.append(seconds)
        results[name] = {
            "metric": metric,
            "ours": float(np.mean(ours)),
            "sklearn": float(np.mean(theirs)),
            "ours_seconds": float(np.mean(our_s)),
            "sklearn_seconds": float(np.mean(their_s)),
        }
        r = results[name]
        rows.append(
            (
                name,
                metric,
                f"{r['ours']:.3f}",
                f"{r['sklearn']:.3f}",
                f"{r['ours_seconds']:.2f}",
                f"{r['sklearn_seconds']:.2f}",
            )
        )
    text = table(
        f"training vs scikit-learn (mean over seeds {seeds[0]}-{seeds[-1]}, same splits and epochs)",
        ("model", "metric", "ours", "sklearn", "ours s", "sklearn s"),
        rows,
    )
    scale, scale_text = scale_case(scale_rows)
    results["scale"] = scale
    return results, text + scale_text


def scale_case(n_rows: int, n_features: int = 32, hidden=(64, 64), batch_size: int = 512) -> tuple[dict, str]:
    """One epoch over synthetic rows with 3 classes: rows/s of this project's training loop (its batches,
    step and optimizer) against scikit-learn's fastest SGD path, `MLPClassifier.fit` with one epoch, and
    as a second, labelled row its `partial_fit` per batch; with the achieved GFLOP/s beside this machine's
    float32 matrix-multiply rate."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    y = (x[:, :3] @ rng.normal(size=(3, 3))).argmax(1)
    torch.manual_seed(0)
    mlp = build_mlp(n_features, list(hidden), "relu", 0.0, 3)
    config = RunConfig(lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=batch_size)
    optimizer = make_optimizer(mlp.parameters(), config)

    def encode(rows_x, rows_y):
        return torch.from_numpy(rows_x), torch.from_numpy(rows_y)

    batches = MemoryBatches(x, y, np.arange(n_rows), encode, batch_size, torch.Generator().manual_seed(0))
    loss_fn = torch.nn.CrossEntropyLoss()
    plan = plan_training(config, n_rows, [n_features, *hidden, 3], threads=torch.get_num_threads())
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)  # as `fit` does: one thread for steps this small
    try:
        start = time.perf_counter()
        train_one_epoch(
            mlp, batches.epoch(1), loss_fn, optimizer, lr_at=lambda k: plan.lr * lr_share(plan, k)
        )
        ours = n_rows / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)

    def sklearn(**kw):
        return MLPClassifier(
            hidden_layer_sizes=hidden,
            solver="sgd",
            learning_rate_init=0.05,
            momentum=0.9,
            alpha=1e-4,
            batch_size=batch_size,
            random_state=0,
            **kw,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch is the point
        warnings.simplefilter("ignore", UserWarning)  # the last, smaller batch
        start = time.perf_counter()
        sklearn(max_iter=1, shuffle=True).fit(x, y)
        fit = n_rows / (time.perf_counter() - start)
        model, order = sklearn(), rng.permutation(n_rows)
        start = time.perf_counter()
        for begin in range(0, n_rows, batch_size):
            batch = order[begin : begin + batch_size]
            model.partial_fit(x[batch], y[batch], classes=[0, 1, 2])
        partial = n_rows / (time.perf_counter() - start)
    widths = [n_features, *hidden, 3]
    macs = sum(a * b for a, b in itertools.pairwise(widths))  # multiply-adds per row, forward
    gflops = 6 * macs * ours / 1e9  # forward 2 FLOPs per multiply-add, backward about twice that
    peak_small = matmul_gflops(batch_size, hidden[0], hidden[1])
    peak_large = matmul_gflops(2048, 2048, 2048, repeats=5)
    result = {
        "rows": n_rows,
        "threads": plan.threads,
        "ours_rows_per_s": ours,
        "sklearn_fit_rows_per_s": fit,
        "sklearn_partial_fit_rows_per_s": partial,
        "ratio": ours / fit,
        "ratio_partial_fit": ours / partial,
        "gflops": gflops,
        "matmul_gflops_step_shape": peak_small,
        "matmul_gflops_large": peak_large,
    }
    text = table(
        f"training loop, {n_rows:,} rows x {n_features} features, 3 classes, hidden {hidden}, batch "
        f"{batch_size}, one epoch ({plan.threads} thread(s); target: ours >= 2x sklearn fit)",
        ("trainer", "rows/s", "ours / this"),
        [
            ("ours (train_one_epoch: schedule, clipping)", f"{ours:,.0f}", "1.00x"),
            ("scikit-learn MLPClassifier.fit (sgd, max_iter=1)", f"{fit:,.0f}", f"{ours / fit:.2f}x"),
            (
                "scikit-learn partial_fit per batch (weaker anchor)",
                f"{partial:,.0f}",
                f"{ours / partial:.2f}x",
            ),
        ],
    )
    text += (
        f"\n   ours: {gflops:.1f} GFLOP/s achieved; this machine's float32 matmul: {peak_small:.0f} "
        f"GFLOP/s at {batch_size}x{hidden[0]}x{hidden[1]}, {peak_large:.0f} GFLOP/s at 2048x2048x2048"
    )
    return result, text


def matmul_gflops(m: int, k: int, n: int, repeats: int = 2000) -> float:
    """float32 matrix multiply rate of this machine at (m x k) @ (k x n), best of 3."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9)
    return best


def scaling_case(workdir, n_rows: int, batch_size: int = 512) -> tuple[dict, str]:
    """One epoch of `pipeline train` on a synthetic Parquet table (32 numeric columns, 3 classes, hidden
    (64, 64), global batch `batch_size`): one process with 2 threads against 2 processes (torchrun, gloo)
    with 1 thread each. No target: on a 2-core machine it is the baseline for a bigger one."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    workdir = Path(workdir)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, 32)).astype(np.float32)
    label = (x[:, :3] @ rng.normal(size=(3, 3))).argmax(1)
    path = workdir / "scaling.parquet"
    pq.write_table(pa.table({**{f"x{j:02d}": x[:, j] for j in range(32)}, "label": label}), path)
    root = Path(__file__).resolve().parents[1]
    results, rows = {}, []
    for label_, processes in (("1 process x 2 threads", 1), ("2 processes x 1 thread", 2)):
        runs = workdir / f"runs-{processes}"
        command = [
            sys.executable, "-m", "pipeline", "train", "--data", str(path), "--target", "label",
            "--task", "multiclass", "--hidden", "64,64", "--epochs", "1", "--quiet", "--runs-dir", str(runs),
            "--batch-size", str(batch_size // processes), "--nproc", str(processes),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run(command, check=True, cwd=root, env=env, capture_output=True)
        report = json.loads((runs / "scaling" / "report.json").read_text())
        rate = report["rows"]["train"] / report["history"]["epoch_seconds"][0]
        results[label_] = {"train_rows_per_s": rate, "accuracy": report["test_metrics"]["accuracy"]}
        rows.append((label_, f"{rate:,.0f}", f"{report['test_metrics']['accuracy']:.3f}"))
    text = table(
        f"data-parallel scaling on this 2-core machine: {n_rows:,} rows, global batch {batch_size}, "
        "one epoch (reported, no target)",
        ("layout", "train rows/s", "test accuracy"),
        rows,
    )
    return results, text
