"""A run's figures, curves.png (loss and metric per epoch) and importance.png (permutation importance),
drawn by a process of their own.

Importing matplotlib and drawing the two figures took about 1 s of a 4 s run on the suite's median
table, after the training and on the path to publication. `Figures` starts `python -m
pipeline.training.figures` when the run starts: it imports matplotlib while the run imports its data and
trains (on one thread: the other core is free), draws each figure as soon as its numbers are sent, and
writes them into the run's staging directory at the end. If that process cannot start or fails, the
figures are drawn in the run's own process, as before. This module imports neither torch nor matplotlib
until it draws (the worker's own start must stay light).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from contract.publish import atomic_write

WAIT_SECONDS = 60  # for the worker to write the figures at the end, after which it is drawn here instead


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def curves_png(curves: dict, metric: str, title: str) -> bytes:
    """`curves`: train_loss, val_loss, val_metric (one per epoch) and best_epoch (1-based)."""
    plt = pyplot()
    epochs = range(1, len(curves["train_loss"]) + 1)
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, curves["train_loss"], label="train")
    loss_ax.plot(epochs, curves["val_loss"], label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", yscale="log")
    loss_ax.set_title("loss", y=1.0)  # a given position: matplotlib skips measuring the tick labels for it
    metric_ax.plot(epochs, curves["val_metric"], color="tab:orange")
    metric_ax.set(xlabel="epoch", ylabel=metric)
    metric_ax.set_title(f"validation {metric}", y=1.0)
    best = curves["best_epoch"]
    for ax in (loss_ax, metric_ax):
        ax.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
        ax.grid(alpha=0.3)
    loss_ax.legend()
    fig.suptitle(title)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.13, top=0.84, wspace=0.28)  # tight_layout: 1 s
    return png_bytes(plt, fig)


def importance_png(importance: list[dict], title: str, top: int = 20) -> bytes:
    """A horizontal bar per feature (the `top` most important): the test loss increase when shuffled."""
    plt = pyplot()
    shown = importance[:top][::-1]
    height = 0.3 * len(shown) + 1.5
    fig, ax = plt.subplots(figsize=(7, height))
    ax.barh([row["feature"] for row in shown], [row["loss_increase"] for row in shown], color="tab:blue")
    ax.set(xlabel="test loss increase when the feature is shuffled")
    ax.set_title(title, y=1.0)
    ax.grid(alpha=0.3, axis="x")
    longest = max((len(row["feature"]) for row in shown), default=1)
    left = min(0.05 + 0.011 * longest, 0.5)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.6 / height, top=1 - 0.4 / height)
    return png_bytes(plt, fig)


def png_bytes(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


DRAW = {"curves.png": curves_png, "importance.png": importance_png}


STARTED: list[subprocess.Popen] = []  # a worker started before the run's imports (`start`)


def start_worker() -> subprocess.Popen | None:
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.training.figures"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # a failure shows when write() draws here
            text=True,
        )
    except OSError:
        return None


def start() -> None:
    """Start the next run's worker now: the command line calls this before it imports torch (1.5 s), so
    the worker's own imports are done by the time the figures' numbers come. An unused worker ends when
    this process does (its input closes)."""
    if not STARTED and (worker := start_worker()) is not None:
        STARTED.append(worker)


class Figures:
    """The figures of one run: `draw(name, **numbers)` as soon as they are known, `write(directory)` at
    the end, `close()` always (it stops a worker still running, as after a failed run)."""

    def __init__(self) -> None:
        self.requests: dict[str, dict] = {}
        self.worker = STARTED.pop() if STARTED else start_worker()

    def draw(self, name: str, **numbers) -> None:
        self.requests[name] = numbers
        self.send({"draw": name, **numbers})

    def write(self, directory: Path) -> None:
        """Every figure drawn, into `directory`: by the worker, or here when it failed."""
        self.send({"write": str(directory)})
        if self.worker is not None:
            self.worker.stdin.close()
            try:
                self.worker.wait(WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        written = self.worker is not None and self.worker.returncode == 0
        for name, numbers in self.requests.items():
            if not written or not (directory / name).is_file():
                png = DRAW[name](**numbers)
                atomic_write(directory / name, lambda f, png=png: f.write(png))

    def send(self, message: dict) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        try:
            self.worker.stdin.write(json.dumps(message) + "\n")
            self.worker.stdin.flush()
        except (BrokenPipeError, OSError):  # the worker died: write() draws here
            pass

    def close(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()


def serve(lines) -> None:
    """The worker: one JSON message per line; draws each figure when asked, writes them all on `write`."""
    pyplot()  # matplotlib's import, while the run trains
    # A first figure loads the fonts and the renderer: a sixth of a second the real one need not wait for.
    curves_png({"train_loss": [1, 0.5], "val_loss": [1, 0.6], "val_metric": [1, 2], "best_epoch": 2}, "", "")
    drawn: dict[str, bytes] = {}
    for line in lines:
        message = json.loads(line)
        if "write" in message:
            directory = Path(message["write"])
            for name, png in drawn.items():
                atomic_write(directory / name, lambda f, png=png: f.write(png))
            return
        name = message.pop("draw")
        drawn[name] = DRAW[name](**message)


if __name__ == "__main__":
    serve(sys.stdin)
    os._exit(0)  # the figures are written and synced: skip the teardown (0.26 s with matplotlib loaded)
