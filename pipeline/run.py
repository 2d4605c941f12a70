"""One model's run, end to end on the torch side: data → train → test metrics → checkpoint and report,
then the torch.compile check. A run directory holds checkpoint.pt, report.json and curves.png."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from contract.publish import publish_dir, staging_dir, temporary_file
from pipeline.checks import parity
from pipeline.checks.compiled import check_compiled
from pipeline.config import RunConfig, describe, fixed_threshold
from pipeline.data.caveats import find_leaks, small_splits
from pipeline.data.load import load_dataset
from pipeline.display import text_table
from pipeline.distributed import SINGLE, Dist
from pipeline.errors import PipelineError
from pipeline.tasks import TASKS
from pipeline.training.calibration import (
    apply_temperature,
    best_threshold,
    fit_temperature,
    validation_logits,
)
from pipeline.training.checkpoint import load_checkpoint, save_checkpoint
from pipeline.training.crossval import cross_validate
from pipeline.training.figures import Figures
from pipeline.training.importance import permutation_importance
from pipeline.training.loop import evaluate, fit
from pipeline.training.models import ModelSpec, TabularModel
from pipeline.training.report import read_json, write_json
from pipeline.training.resume import Resume
from pipeline.training.schedule import auto_hidden

HELD_OUT_ROWS = 1024  # test rows kept in the checkpoint for parity checks later


def quiet(*args) -> None:
    pass


def train_run(
    config: RunConfig, runs_dir: Path, progress: bool = True, log=print, job: Dist = SINGLE
) -> dict:
    """Train one model and publish its run directory; returns the report. With several processes
    (`job`), every one trains and rank 0 alone writes the run (and draws its figures, in a process of
    their own started now: `pipeline.training.figures`)."""
    config.validate()
    check_writable(runs_dir)  # now, not after the training: the run is published there
    figures = Figures() if job.is_main else None
    try:
        return train_and_publish(config, runs_dir, progress, log, job, figures)
    finally:
        if figures is not None:
            figures.close()


def train_and_publish(
    config: RunConfig, runs_dir: Path, progress: bool, log, job: Dist, figures: Figures | None
) -> dict:
    if not job.is_main:
        log = quiet
    task_name = config.task or "task to infer"
    where = f" on {job.world} processes ({job.backend.name})" if job.world > 1 else ""
    log(f"{config.name}: {task_name} on {Path(config.data).name} → {config.target}{where}")
    log(describe(config))
    dataset = load_dataset(config, log, job)
    # The run records what was inferred: the task, and how a CSV is written (batch prediction's default).
    config = dataclasses.replace(config, task=dataset.task, **dataset.dialect)
    small_splits(dataset, config.cv, log)
    leaks = find_leaks(dataset, config.target, log)
    task = TASKS[config.task]
    mean, std = dataset.scale
    config = dataclasses.replace(config, hidden=list(config.hidden) or auto_hidden(dataset.rows["train"]))
    spec = ModelSpec(
        task=config.task,
        features=dataset.features,
        hidden=list(config.hidden),
        activation=config.activation,
        dropout=config.dropout,
        n_outputs=task.width(dataset.n_classes, len(dataset.target_names)),
        threshold=0.5 if config.threshold == "auto" else fixed_threshold(config.threshold),
        target_mean=[mean] if not task.is_classifier else [],
        target_std=[std] if not task.is_classifier else [],
        clip=config.clip,
    )
    cv, fitted, fit_config = None, dataset, config
    if config.cv:
        cv, fitted, fit_config = cross_validate(dataset, spec, config, log, job)
    torch.manual_seed(config.seed)
    model = TabularModel(spec)
    resume = Resume.for_run(runs_dir, config.name, dataclasses.asdict(config), job.world, dataset.files)
    start = time.perf_counter()
    history = fit(model, fitted, fit_config, progress=progress, job=job, resume=resume, log=log)
    seconds = time.perf_counter() - start
    if figures is not None:
        curves = {k: getattr(history, k) for k in ("train_loss", "val_loss", "val_metric", "best_epoch")}
        figures.draw(
            "curves.png", curves=curves, metric=task.main_metric, title=f"{config.name} ({config.task})"
        )
    plan = history.plan  # the report's config says what ran: the batch, rate, epochs and patience used
    config = dataclasses.replace(
        config, batch_size=plan["batch_size"], lr=plan["lr"], epochs=plan["epochs"], patience=plan["patience"]
    )
    calibration = calibrate(model, dataset, config, job, log)
    metrics = evaluate(model, dataset.chunks("test"), dataset.class_names, job)
    importance = permutation_importance(model, dataset.chunks("test"), dataset.class_names, config.seed)
    if figures is not None:
        figures.draw("importance.png", importance=importance, title=f"{config.name}: permutation importance")
    report = {
        "name": config.name,
        "task": config.task,
        "config": dataclasses.asdict(config),
        "rows": dict(fitted.rows),
        "streamed": dataset.streamed,
        "dropped_rows": dataset.dropped,
        "train_seconds": seconds,
        "epochs_run": len(history.train_loss),
        "training": {
            **history.plan,
            "stopped": history.stopped,
            "recoveries": history.recoveries,
            "best_epoch": history.best_epoch,
        },
        "calibration": calibration,
        "test_metrics": metrics,
        "feature_importance": importance,
        "history": history.to_dict(),
        "features": [f.to_dict() for f in dataset.features],
        "class_names": dataset.class_names,
        "target_names": dataset.target_names,
        "leaks": leaks,  # features that alone predict the target almost perfectly (pipeline.data.caveats)
    }
    if cv is not None:
        report["cv"] = cv
    held_out = np.concatenate(job.gather(dataset.held_out(HELD_OUT_ROWS)))[:HELD_OUT_ROWS]
    run_dir = runs_dir / config.name
    if not job.is_main:
        job.barrier()  # rank 0 publishes
        return report
    staged = staging_dir(run_dir)
    try:
        save_checkpoint(
            staged / "checkpoint.pt",
            model,
            config=dataclasses.asdict(config),
            class_names=dataset.class_names,
            target_names=dataset.target_names,
            metrics=metrics,
            held_out=torch.from_numpy(held_out),
        )
        write_json(staged / "report.json", report)
        figures.write(staged)
        publish_dir(staged, run_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    finally:
        job.barrier()
    resume.clear()
    log(f"  {summary_line(report)}; {report['epochs_run']} epochs in {seconds:.1f}s → {run_dir}")
    return report


def check_writable(runs_dir: Path) -> None:
    """PipelineError unless a file can be created in `runs_dir` (made if missing): a read-only or
    forbidden folder, or a full disk, is found before the training, not when its run is published."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = temporary_file(runs_dir / ".write-check.", ".tmp")
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"cannot write the runs directory {runs_dir}: {exc.strerror or exc}") from None


def calibrate(model: TabularModel, dataset, config: RunConfig, job: Dist, log) -> dict:
    """Classifiers, on the validation split: temperature scaling when it lowers the log loss, and the
    binary threshold with the best F1 under `--threshold auto`. Both change the model in place."""
    if not TASKS[config.task].is_classifier:
        return {}
    logits, y = validation_logits(model, dataset.chunks("val"), job)
    temperature, before, after = fit_temperature(logits, y)
    if temperature != 1.0:
        apply_temperature(model, temperature)
        log(f"  temperature {temperature:.3g}: validation log loss {before:.4f} → {after:.4f}")
    result = {"temperature": temperature, "val_log_loss_before": before, "val_log_loss_after": after}
    if config.task == "binary" and config.threshold == "auto":
        model.spec.threshold = model.head.threshold = best_threshold(logits / temperature, y)
        log(f"  threshold: {model.spec.threshold:.4f} (best F1 on the validation rows)")
        result["threshold"] = model.spec.threshold
    return result


def summary_line(report: dict) -> str:
    m = report["test_metrics"]
    if "accuracy" in m:
        line = f"test accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}"
    else:
        line = f"test RMSE {m['rmse']:.3f}, MAE {m['mae']:.3f}, R² {m['r2']:.3f}"
    if "cv" in report:
        name = "accuracy" if "accuracy" in m else "rmse"
        cv = report["cv"]["metrics"][name]
        line += f"; {report['cv']['folds']}-fold cv {name} {cv['mean']:.3f} ± {cv['sd']:.3f}"
    return line


def compile_run(run_dir: Path, log=print) -> dict:
    """torch.compile the checkpoint's model, check it against eager, record the result in report.json."""
    model, payload = load_checkpoint(run_dir / "checkpoint.pt")
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy(), seed=0)
    try:
        compiled = check_compiled(model, rows, log)
    except parity.ParityError as exc:
        raise PipelineError(f"{run_dir.name}: {exc}") from None
    report = read_json(run_dir / "report.json")
    report["compile"] = compiled
    write_json(run_dir / "report.json", report)
    return report


def builtin_summary(reports: list[dict]) -> str:
    """The table `make all` prints: one row per model."""
    rows = [
        ("model", "task", "test metric", "epochs", "train s", "compile check s", "eager us", "compiled us")
    ]
    for r in reports:
        c = r.get("compile", {})
        rows.append(
            (
                r["name"],
                r["task"],
                summary_line(r).split(",")[0],
                str(r["epochs_run"]),
                f"{r['train_seconds']:.1f}",
                f"{c.get('check_seconds', np.nan):.1f}",
                f"{c.get('eager_batch1_us', np.nan):.0f}",
                f"{c.get('compiled_batch1_us', np.nan):.0f}",
            )
        )
    return text_table(rows)
