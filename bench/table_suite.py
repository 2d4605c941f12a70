"""The `tables` section: our default training against the tools a user would otherwise pick, on the public
tables of `bench.public_tables`, one run each, side by side.

Per table, every tool gets the same train and test files. Ours is driven only through its command line
with the table and the target, nothing else:
    python -m pipeline train --data train.csv --target COL --name NAME --runs-dir R   (timed: the process)
    python -m export export --runs-dir R --repository M --model NAME   (ONNX + verification)
    python -m serve predict --model M/NAME --data test.csv --out ours.csv
(`python -m export all` runs the same training and export, plus the torch.compile check, which says
nothing about quality, so it is left out here.) The peers run as processes of their own
(`bench.peers`: LightGBM, HistGradientBoosting and scikit-learn's MLP, defaults). Every metric comes from
the written prediction files and the test file, by the same code for all four: accuracy and log loss
(from the `p_<class>` columns) for classifiers, RMSE for regression.

`ratio` is ours against the best peer, higher is better for both kinds: accuracy / best accuracy,
best RMSE / RMSE. A table where our run fails counts 0. Time ratios compare our train process with each
peer's import + read + fit: their median over the tables, and on the median-size table.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.public_tables import BY_NAME, PublicTable, write_split
from bench.report import ROOT, table

PEERS = ("lightgbm", "histgb", "mlp")
PEER_NAMES = {"lightgbm": "LightGBM", "histgb": "HistGB", "mlp": "MLP"}
EPSILON = 1e-15  # log loss: probabilities are clipped here, as scikit-learn's log_loss does


def canonical(value) -> str:
    """A class value as text, so that 3, 3.0 and '3' (pandas, our labels, a column name) are one class."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    return str(int(number)) if number.is_integer() else repr(number)


def score(spec: PublicTable, test_file: Path, predictions_file: Path) -> dict:
    """Metrics of one prediction file against the test file's target (rows in the same order)."""
    import pandas as pd

    truth = pd.read_csv(test_file, **spec.read_options())[spec.target]
    predicted = pd.read_csv(predictions_file)
    if len(predicted) != len(truth):
        raise ValueError(f"{predictions_file}: {len(predicted)} rows for {len(truth)} test rows")
    if spec.task == "regression":
        column = "prediction" if "prediction" in predicted else f"predicted_{spec.target}"
        error = predicted[column].to_numpy(float) - truth.to_numpy(float)
        return {"rmse": float(np.sqrt(np.mean(error**2)))}
    labels = [canonical(v) for v in truth]
    accuracy = float(np.mean([canonical(v) == t for v, t in zip(predicted["label"], labels)]))
    columns = {canonical(c[2:]): c for c in predicted.columns if c.startswith("p_")}
    true_p = np.array([predicted[columns[t]].iat[i] if t in columns else 0.0 for i, t in enumerate(labels)])
    log_loss = float(-np.mean(np.log(np.clip(true_p, EPSILON, 1.0))))
    return {
        "accuracy": accuracy,
        "log_loss": log_loss,
        "classes_predicted": int(predicted["label"].nunique()),
    }


def command(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `python ARGS` from the repository root; (the finished process, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    return done, time.perf_counter() - start


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_ours(spec: PublicTable, train: Path, test: Path, out: Path, scratch: Path, extra: list[str]) -> dict:
    """Our default run (`extra`: flags for tests only), then export and `serve predict` into `out`."""
    runs, models = scratch / "runs", scratch / "models"
    done, seconds = command(
        ["-m", "pipeline", "train", "--data", str(train), "--target", spec.target, "--name", spec.name,
         "--runs-dir", str(runs), "--quiet", *extra]
    )  # fmt: skip
    result = {"status": done.returncode, "seconds": seconds}
    if done.returncode != 0:
        return {**result, "failed": "train", "stderr": last_line(done.stderr)}
    report_text = (runs / spec.name / "report.json").read_text()
    (out.parent / "ours-report.json").write_text(report_text)  # the run's history, kept for a look
    report = json.loads(report_text)
    history = report["history"]
    epoch_losses = list(zip(history["train_loss"], history["val_loss"]))
    bad_epochs = [k + 1 for k, pair in enumerate(epoch_losses) if not all(map(math.isfinite, pair))]
    result |= {
        "epochs_run": report["epochs_run"],
        "epochs_max": report["config"]["epochs"],
        "best_epoch": history.get("best_epoch"),
        "non_finite_loss": bool(bad_epochs) or not math.isfinite(report["test_metrics"]["loss"]),
        "first_non_finite_epoch": bad_epochs[0] if bad_epochs else None,
        "loop_seconds": report["train_seconds"],
        "task": report["task"],
        "own_test_metrics": {k: v for k, v in report["test_metrics"].items() if isinstance(v, float)},
    }
    for step, args in (
        ("export", ["-m", "export", "export", "--runs-dir", str(runs), "--repository", str(models),
                    "--model", spec.name]),
        ("predict", ["-m", "serve", "predict", "--model", str(models / spec.name), "--data", str(test),
                     "--out", str(out)]),
    ):  # fmt: skip
        done, step_seconds = command(args)
        result[f"{step}_seconds"] = step_seconds
        if done.returncode != 0:
            return {**result, "status": done.returncode, "failed": step, "stderr": last_line(done.stderr)}
    return result | score(spec, test, out)


def run_peer(tool: str, spec: PublicTable, train: Path, test: Path, work: Path) -> dict:
    out = work / f"{tool}.csv"
    args = ["-m", "bench.peers", tool, str(train), str(test), spec.target, spec.task, str(out)]
    args += ["--sep", spec.sep, "--decimal", spec.decimal]
    start = time.time()  # the child reports time.time() when fit returns: same clock
    done, seconds = command(args)
    if done.returncode != 0:
        return {"status": done.returncode, "seconds": seconds, "stderr": last_line(done.stderr)}
    fit_done = next(
        float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("fit_done")
    )
    return {"status": 0, "seconds": fit_done - start, "process_seconds": seconds} | score(spec, test, out)


def metric_name(task: str) -> str:
    return "rmse" if task == "regression" else "accuracy"


def ratio(task: str, ours: float | None, best: float) -> float:
    """Higher is better for both kinds; a failed run of ours is 0."""
    if ours is None:
        return 0.0
    return best / ours if task == "regression" else ours / best


def run_table(spec: PublicTable, out_dir: Path, max_rows: int | None, tools, extra: list[str]) -> dict:
    """Split, run ours and each peer one after the other, score; the files stay in `out_dir`."""
    train, test = write_split(spec, out_dir, max_rows)
    for stale in (*out_dir.glob("ours*"), *(out_dir / f"{tool}.csv" for tool in PEERS)):
        stale.unlink(missing_ok=True)  # a failed run must not leave an earlier run's predictions
    metric = metric_name(spec.task)
    with train.open() as lines:
        rows = sum(1 for _ in lines) - 1  # no field in these tables spans lines
    result: dict = {
        "task": spec.task,
        "train_rows": rows,
        "metric": metric,
        "load_before": os.getloadavg()[0],  # the machine's 1-minute load: the noise this table saw
    }
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as scratch:
        result["ours"] = run_ours(spec, train, test, out_dir / "ours.csv", Path(scratch), extra)
    for tool in tools:
        result[tool] = run_peer(tool, spec, train, test, out_dir)
    scored = [result[tool][metric] for tool in tools if metric in result[tool]]
    result["best_peer"] = (min if metric == "rmse" else max)(scored) if scored else None
    result["ratio"] = ratio(spec.task, result["ours"].get(metric), result["best_peer"]) if scored else None
    return result


def flags(result: dict) -> list[str]:
    """What went wrong with our run on one table, beyond a lower metric."""
    ours, found = result["ours"], []
    if ours["status"] != 0:
        found.append(f"exit {ours['status']} in {ours['failed']}: {ours['stderr']}")
    if ours.get("non_finite_loss"):
        where = ours.get("first_non_finite_epoch")
        found.append(f"non-finite loss{f' from epoch {where}' if where else ''}, exit status 0")
    if ours.get("classes_predicted") == 1:
        found.append("predicts one class for every test row")
    if ours.get("epochs_run") is not None and ours["epochs_run"] >= ours["epochs_max"]:
        found.append(f"ran into the epoch cap ({ours['epochs_max']})")
    return found


def summarize(results: dict[str, dict], tools) -> dict:
    ran = {n: r for n, r in results.items() if r["ratio"] is not None}
    ratios = {n: r["ratio"] for n, r in ran.items()}
    failed = [n for n, r in results.items() if r["ours"]["status"] != 0 or r["ours"].get("non_finite_loss")]
    summary: dict = {
        "tables": len(results),
        "failures": failed,
        "flagged": {n: flags(r) for n, r in results.items() if flags(r)},
        "mean_ratio": float(np.mean(list(ratios.values()))) if ratios else None,
        "mean_ratio_ran": float(np.mean([v for n, v in ratios.items() if n not in failed] or [np.nan])),
        "min_ratio": min(ratios.values()) if ratios else None,
        "min_ratio_table": min(ratios, key=ratios.get) if ratios else None,
        "below_0.97": sorted(n for n, v in ratios.items() if v < 0.97),
    }
    timed = {n: r for n, r in results.items() if n not in failed}
    by_rows = sorted(timed, key=lambda n: timed[n]["train_rows"])
    if by_rows:
        median_table = by_rows[(len(by_rows) - 1) // 2]
        summary["median_table"] = median_table
    for tool in tools:
        per_table = {
            n: r["ours"]["seconds"] / r[tool]["seconds"] for n, r in timed.items() if r[tool]["status"] == 0
        }
        summary[f"time_over_{tool}"] = per_table
        summary[f"median_time_over_{tool}"] = (
            float(np.median(list(per_table.values()))) if per_table else None
        )
        if by_rows:
            summary[f"median_table_time_over_{tool}"] = per_table.get(median_table)
    return summary


def cell(result: dict, metric: str) -> str:
    if result["status"] != 0:
        return f"exit {result['status']}"
    value = f"{result[metric]:.3f}" if metric == "accuracy" else f"{result[metric]:.4g}"
    loss = f" {result['log_loss']:.3f}" if "log_loss" in result else ""
    return f"{value}{loss} {result['seconds']:.1f}s"


def text_of(results: dict[str, dict], summary: dict, tools, hog: bool) -> str:
    rows = []
    for name, r in results.items():
        ours = r["ours"]
        epochs = f"{ours['epochs_run']}/{ours['epochs_max']}" if "epochs_run" in ours else "-"
        ratio_text = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        rows.append(
            (name, r["task"], f"{r['train_rows']:,}", r["metric"], cell(ours, r["metric"]), epochs,
             *(cell(r[t], r["metric"]) for t in tools), ratio_text)
        )  # fmt: skip
    header = ("table", "task", "train rows", "metric", "ours (metric log-loss s)", "epochs",
              *(PEER_NAMES[t] for t in tools), "ratio")  # fmt: skip
    title = (
        "public tables: our default run vs LightGBM, HistGradientBoosting, scikit-learn MLP (defaults, same "
        f"train/test files; s: our train process, their import+read+fit){' beside a CPU hog' if hog else ''}"
    )
    lines = [table(title, header, rows)]
    for name, found in summary["flagged"].items():
        lines.append(f"   {name}: {'; '.join(found)}")
    mean = summary["mean_ratio"]
    lines.append(
        f"   failures (exit status, non-finite loss): {len(summary['failures'])} of {summary['tables']} "
        f"{summary['failures'] or ''} (target 0)"
    )
    if mean is not None:
        lines.append(
            f"   quality ratio to the best peer: mean {mean:.3f} (target >= 1.00; a failure counts 0), "
            f"{summary['mean_ratio_ran']:.3f} over the tables that ran; min {summary['min_ratio']:.3f} on "
            f"{summary['min_ratio_table']} (target >= 0.97 on every table); below 0.97: "
            f"{', '.join(summary['below_0.97']) or 'none'}"
        )
    if summary.get("median_table"):
        median = summary["median_table"]
        parts = [
            f"{PEER_NAMES[t]}'s {summary[f'median_time_over_{t}']:.2f}x (median-size table {median}: "
            f"{summary[f'median_table_time_over_{t}']:.2f}x)"
            for t in tools
            if summary.get(f"median_time_over_{t}") is not None
        ]
        lines.append(
            "   time, our train process over, median over tables: " + "; ".join(parts)
            + " (targets: <= 3x LightGBM, <= 1x MLP)"
        )  # fmt: skip
    return "\n".join(lines)


def run(names: list[str], out_dir: Path, max_rows: int | None = None, tools=PEERS, extra=(),
        hog: bool = False) -> tuple[dict, str]:  # fmt: skip
    """The section: every named table, one after the other. Files under `out_dir/<table>/`."""
    results = {}
    load_start = os.getloadavg()
    for name in names:
        results[name] = run_table(BY_NAME[name], out_dir / name, max_rows, tools, list(extra))
        print(f"   {name}: ratio {results[name]['ratio']}", file=sys.stderr, flush=True)
    summary = summarize(results, tools)
    summary["load_average_start"], summary["load_average_end"] = load_start, os.getloadavg()
    summary["cpus"], summary["hog"], summary["max_rows"] = os.cpu_count(), hog, max_rows
    return {"tables": results, "summary": summary}, text_of(results, summary, tools, hog)
