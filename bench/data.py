"""Data at scale: reading and encoding a large CSV against pyarrow's own reader, the peak memory of one
training epoch, and out-of-core training from Parquet under a memory budget against the in-memory loop.

Every measurement runs in a fresh process (its peak memory from its own rusage: `bench.report.measure`),
and the reading comparison alternates the contenders over several rounds so machine noise hits them alike.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bench.report import measure, table
from bench.tables import table_config, write_table

TYPED = "{**{f'x{k:02d}': pa.float64() for k in range(30)}, 'colour': pa.string(), 'city': pa.string()}"
READERS = {  # name → (set-up, untimed; the timed call)
    "ours: read + encode (load_dataset)": (
        "from pipeline.config import RunConfig; from pipeline.data.load import load_dataset",
        "load_dataset(RunConfig(**CONFIG), lambda *a: None)",
    ),
    "pyarrow.csv.read_csv (types inferred)": ("import pyarrow.csv as c", "c.read_csv(PATH)"),
    "pyarrow.csv.read_csv (types given)": (
        "import pyarrow as pa, pyarrow.csv as c",
        f"c.read_csv(PATH, convert_options=c.ConvertOptions(column_types={TYPED}))",
    ),
}


def measured(setup: str, code: str, path: Path, config: dict) -> tuple[float, float]:
    """(seconds of `code` alone, after `setup`; peak RSS MB of its process)."""
    script = (
        f"import time; PATH = {str(path)!r}; CONFIG = {config!r}\n{setup}\n"
        f"start = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"
    )
    _, rss, out = measure([sys.executable, "-c", script])
    return float(out.strip().splitlines()[-1]), rss


def reading(path: Path, rounds: int) -> tuple[dict, list]:
    config = {**table_config(path), "memory_budget": "auto"}
    times: dict[str, list] = {name: [] for name in READERS}
    memory: dict[str, list] = {name: [] for name in READERS}
    for _ in range(rounds):
        for name, (setup, code) in READERS.items():
            seconds, rss = measured(setup, code, path, config)
            times[name].append(seconds)
            memory[name].append(rss)
    result = {
        name: {"seconds": statistics.median(times[name]), "rss_mb": max(memory[name])} for name in READERS
    }
    ours = result["ours: read + encode (load_dataset)"]["seconds"]
    rows = [
        (name, f"{r['seconds']:.2f}", f"{ours / r['seconds']:.2f}x", f"{r['rss_mb']:.0f}")
        for name, r in result.items()
    ]
    return result, rows


def train_epoch(path: Path, runs: Path, budget: str) -> dict:
    """One epoch of `pipeline train` on `path` in a fresh process: peak RSS, training-pass rows/s."""
    config = table_config(path)
    command = [
        sys.executable, "-m", "pipeline", "train", "--data", str(path), "--target", config["target"],
        "--ignore", ",".join(config["ignore"]), "--categorical", ",".join(config["categorical"]),
        "--epochs", "1", "--batch-size", "512", "--memory-budget", budget, "--quiet", "--runs-dir", str(runs),
    ]  # fmt: skip
    wall, rss, _ = measure(command)
    report = json.loads((runs / config["name"] / "report.json").read_text())
    seconds = report["history"]["epoch_seconds"][0]
    return {
        "rows": sum(report["rows"].values()),
        "streamed": report["streamed"],
        "peak_rss_mb": rss,
        "wall_s": wall,
        "train_rows_per_s": report["rows"]["train"] / seconds,
        "test_accuracy": report["test_metrics"]["accuracy"],
    }


def run_section(workdir: Path, rows: int, big_rows: int, rounds: int) -> tuple[dict, str]:
    csv_path = write_table(workdir / f"table-{rows}.csv", rows)
    results: dict = {"rows": rows, "csv_mb": csv_path.stat().st_size / 2**20}
    results["reading"], reading_rows = reading(csv_path, rounds)
    text = table(
        f"reading and encoding a {rows:,}-row CSV ({results['csv_mb']:.0f} MB; median of {rounds}, "
        "alternated; target: ours <= 2x pyarrow.csv.read_csv)",
        ("reader", "seconds", "ours / this", "peak RSS MB"),
        reading_rows,
    )
    in_memory = train_epoch(csv_path, workdir / "runs-memory", "auto")
    parquet = write_table(workdir / f"table-{big_rows}.parquet", big_rows)
    budget = "1GB" if big_rows >= 10_000_000 else "64MB"
    streamed = train_epoch(parquet, workdir / "runs-streamed", budget)
    results["train_in_memory"], results["train_streamed"] = in_memory, streamed
    ratio = streamed["train_rows_per_s"] / in_memory["train_rows_per_s"]
    results["streamed_over_in_memory"] = ratio
    text += table(
        "pipeline train --epochs 1 (batch 512, default model): peak memory and training-pass speed "
        "(targets: in-memory CSV <= 800 MB; streamed Parquet <= 1.5 GB at >= 0.7x the in-memory rows/s)",
        ("table", "path", "peak RSS MB", "train rows/s", "vs in-memory", "test accuracy", "wall s"),
        [
            (
                f"{rows:,}-row CSV",
                "in memory",
                f"{in_memory['peak_rss_mb']:.0f}",
                f"{in_memory['train_rows_per_s']:,.0f}",
                "1.00x",
                f"{in_memory['test_accuracy']:.3f}",
                f"{in_memory['wall_s']:.1f}",
            ),
            (
                f"{big_rows:,}-row Parquet",
                f"streamed (budget {budget})",
                f"{streamed['peak_rss_mb']:.0f}",
                f"{streamed['train_rows_per_s']:,.0f}",
                f"{ratio:.2f}x",
                f"{streamed['test_accuracy']:.3f}",
                f"{streamed['wall_s']:.1f}",
            ),
        ],
    )
    return results, text
