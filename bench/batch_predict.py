"""`serve predict` end to end on the generated table of bench/tables.py: rows/s and peak resident memory
of the command as a subprocess, CSV → CSV and Parquet → Parquet, beside pyarrow reading the same file
alone (`pyarrow.csv.read_csv`, `pyarrow.parquet.read_table`) as a subprocess too, so both pay the same
interpreter start-up. The model is trained and exported by the pipeline itself on the table's first rows.
Rounds alternate the commands, so machine noise hits all of them; each keeps its median."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.report import measure, table
from bench.tables import table_config, write_table

ROOT = Path(__file__).resolve().parents[1]
READ_CSV = "import sys, pyarrow.csv; pyarrow.csv.read_csv(sys.argv[1])"
READ_PARQUET = "import sys, pyarrow.parquet; pyarrow.parquet.read_table(sys.argv[1])"


def quiet(*args, **kwargs):
    pass


def train_model(scratch: Path, rows: int) -> Path:
    """Train (a few epochs) and export a binary model for the table's shape; returns its directory."""
    from export.run import export_run
    from pipeline.config import RunConfig
    from pipeline.run import train_run

    sample = write_table(scratch / "synthetic.csv", rows)  # the big table's first rows (same seed)
    config = RunConfig(**{**table_config(sample), "epochs": 3, "batch_size": 256})
    train_run(config, scratch / "runs", progress=False, log=quiet)
    export_run(scratch / "runs" / "synthetic", scratch / "models", log=quiet)
    return scratch / "models" / "synthetic"


def run(n_rows: int, train_rows: int = 20_000, rounds: int = 3) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as name:
        scratch = Path(name)
        model = str(train_model(scratch, min(train_rows, n_rows)))
        csv_file = write_table(scratch / "table.csv", n_rows)
        parquet_file = write_table(scratch / "table.parquet", n_rows)
        quarter = write_table(scratch / "quarter.csv", n_rows // 4)  # memory must not grow with rows
        predict = [sys.executable, "-m", "serve", "predict", "--model", model, "--data"]
        commands = {  # name → (command, rows)
            "predict CSV → CSV": ([*predict, str(csv_file), "--out", str(scratch / "out.csv")], n_rows),
            "pyarrow.csv.read_csv alone": ([sys.executable, "-c", READ_CSV, str(csv_file)], n_rows),
            "predict Parquet → Parquet": (
                [*predict, str(parquet_file), "--out", str(scratch / "out.parquet")],
                n_rows,
            ),
            "pyarrow.parquet.read_table alone": (
                [sys.executable, "-c", READ_PARQUET, str(parquet_file)],
                n_rows,
            ),
            "predict CSV → CSV, 1/4 of the rows": (
                [*predict, str(quarter), "--out", str(scratch / "quarter-out.csv")],
                n_rows // 4,
            ),
        }
        samples: dict[str, list] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, (command, _) in commands.items():
                samples[name].append(measure(command)[:2])
        size_mb = {"csv": csv_file.stat().st_size / 1e6, "parquet": parquet_file.stat().st_size / 1e6}
    results: dict = {"rows": n_rows, "rounds": rounds, "file_mb": size_mb, "runs": {}}
    for name, (_, rows) in commands.items():
        seconds = float(np.median([s for s, _ in samples[name]]))
        results["runs"][name] = {
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "peak_rss_mb": float(np.max([m for _, m in samples[name]])),
        }
    runs = results["runs"]
    results["ratios"] = {
        "csv_predict_over_read_csv": runs["predict CSV → CSV"]["seconds"]
        / runs["pyarrow.csv.read_csv alone"]["seconds"],
        "parquet_predict_over_read_table": runs["predict Parquet → Parquet"]["seconds"]
        / runs["pyarrow.parquet.read_table alone"]["seconds"],
    }
    reference = {
        "predict CSV → CSV": "pyarrow.csv.read_csv alone",
        "predict Parquet → Parquet": "pyarrow.parquet.read_table alone",
    }
    rows = []
    for name, run in runs.items():
        versus = reference.get(name)
        ratio = f"{run['seconds'] / runs[versus]['seconds']:.2f}x its time" if versus else ""
        rows.append(
            (
                name,
                f"{run['rows']:,}",
                f"{run['seconds']:.2f}",
                f"{run['rows_per_s']:,.0f}",
                f"{run['peak_rss_mb']:.0f}",
                ratio,
            )
        )
    text = table(
        f"batch prediction, end to end as a subprocess (median of {rounds}; CSV {size_mb['csv']:.0f} MB, "
        f"Parquet {size_mb['parquet']:.0f} MB; targets: >= 400,000 rows/s, <= 300 MB)",
        ("command", "rows", "wall s", "rows/s", "peak RSS MB", "vs reading alone"),
        rows,
    )
    return results, text
