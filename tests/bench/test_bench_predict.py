"""The batch-prediction benchmark: its table generator (shared with the data benchmarks) has the
documented shape, and the section runs at a tiny size (a smoke test, not a measurement)."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench import batch_predict
from bench import tables as bench_tables
from bench.tables import table_config, write_table


def test_the_bench_table_has_its_documented_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_tables, "CHUNK_ROWS", 10_000)  # written chunk by chunk, at a test's size
    small, big = write_table(tmp_path / "t.csv", 1000), write_table(tmp_path / "t.parquet", 25_000)
    table = pacsv.read_csv(small)
    assert table.column_names == ["id", *(f"x{k:02d}" for k in range(30)), "colour", "city", "label"]
    parquet = pq.read_table(big)
    assert parquet.num_rows == 25_000 and pq.ParquetFile(big).metadata.num_row_groups == 3
    assert parquet.slice(0, 1000).equals(table.cast(parquet.schema))  # the first rows do not depend on size
    share = np.mean([parquet.column(f"x{k:02d}").null_count / parquet.num_rows for k in range(30)])
    assert 0.018 < share < 0.022
    assert set(parquet.column("label").to_pylist()) == {0, 1}
    assert (
        len(set(parquet.column("colour").to_pylist())) == 8
        and len(set(parquet.column("city").to_pylist())) == 50
    )
    config = table_config(small)
    assert (config["target"], config["categorical"], config["ignore"]) == (
        "label",
        ["colour", "city"],
        ["id"],
    )


def test_predict_section_runs():
    results, text = batch_predict.run(n_rows=2000, rounds=1)
    assert set(results["runs"]) == {
        "predict CSV → CSV",
        "pyarrow.csv.read_csv alone",
        "predict Parquet → Parquet",
        "pyarrow.parquet.read_table alone",
        "predict CSV → CSV, 1/4 of the rows",
    }
    for run in results["runs"].values():
        assert run["rows_per_s"] > 0 and 20 < run["peak_rss_mb"] < 4000  # the child's own, not ours
    assert results["ratios"]["csv_predict_over_read_csv"] > 0 and "vs reading alone" in text
