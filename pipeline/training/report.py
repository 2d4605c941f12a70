"""A training run's report: report.json (config, metrics, history) and curves.png (loss and metric)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from contract.publish import atomic_write
from pipeline.training.loop import History


def write_json(path: Path, values: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(values, indent=2) + "\n").encode()))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def plot_curves(path: Path, history: History, metric: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = range(1, len(history.train_loss) + 1)
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, history.train_loss, label="train")
    loss_ax.plot(epochs, history.val_loss, label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    metric_ax.plot(epochs, history.val_metric, color="tab:orange")
    metric_ax.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in (loss_ax, metric_ax):
        ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best epoch {history.best_epoch}")
        ax.grid(alpha=0.3)
    loss_ax.legend()
    fig.suptitle(title)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.13, top=0.84, wspace=0.28)  # tight_layout: 1 s
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_importance(path: Path, importance: list[dict], title: str, top: int = 20) -> None:
    """A horizontal bar per feature (the `top` most important): the test loss increase when shuffled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shown = importance[:top][::-1]
    height = 0.3 * len(shown) + 1.5
    fig, ax = plt.subplots(figsize=(7, height))
    ax.barh([row["feature"] for row in shown], [row["loss_increase"] for row in shown], color="tab:blue")
    ax.set(xlabel="test loss increase when the feature is shuffled", title=title)
    ax.grid(alpha=0.3, axis="x")
    longest = max((len(row["feature"]) for row in shown), default=1)
    left = min(0.05 + 0.011 * longest, 0.5)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.6 / height, top=1 - 0.4 / height)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
