"""Training against scikit-learn's MLPClassifier / MLPRegressor (same hidden sizes, SGD, learning rate,
momentum, L2, batch size and epochs, same splits and encoded features), and a 1,000,000-row scale case:
rows/s of this project's loop vs scikit-learn's partial_fit."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from bench.report import table
from pipeline.config import builtin_config
from pipeline.data import load_dataset
from pipeline.models import build_mlp
from pipeline.run import train_run
from pipeline.tasks import TASKS
from pipeline.train import train_one_epoch


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

    from pipeline.models import Preprocess

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
            value, seconds = sklearn_run(config, report["epochs_run"])  # the epochs we actually ran
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
    """One epoch over synthetic rows with 3 classes: rows/s of our loop vs sklearn's partial_fit."""
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    y = (x[:, :3] @ rng.normal(size=(3, 3))).argmax(1)
    torch.manual_seed(0)
    mlp = build_mlp(n_features, list(hidden), "relu", 0.0, 3)
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.05, momentum=0.9)
    features, target = torch.from_numpy(x), torch.from_numpy(y)
    start = time.perf_counter()
    train_one_epoch(
        mlp,
        features,
        target,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        batch_size,
        torch.Generator().manual_seed(0),
    )
    ours = n_rows / (time.perf_counter() - start)
    model = MLPClassifier(
        hidden_layer_sizes=hidden,
        solver="sgd",
        learning_rate_init=0.05,
        momentum=0.9,
        batch_size=batch_size,
        random_state=0,
    )
    order = rng.permutation(n_rows)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the last, smaller batch
        for begin in range(0, n_rows, batch_size):
            batch = order[begin : begin + batch_size]
            model.partial_fit(x[batch], y[batch], classes=[0, 1, 2])
    theirs = n_rows / (time.perf_counter() - start)
    result = {"rows": n_rows, "ours_rows_per_s": ours, "sklearn_rows_per_s": theirs, "ratio": ours / theirs}
    text = (
        f"\n== scale case: {n_rows:,} rows x {n_features} features, 3 classes, hidden {hidden}, batch "
        f"{batch_size}, one epoch: ours {ours:,.0f} rows/s, sklearn partial_fit {theirs:,.0f} rows/s "
        f"({result['ratio']:.2f}x)"
    )
    return result, text
