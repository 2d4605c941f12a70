"""The batch-prediction benchmark: its table generator (shared with the data benchmarks) has the
documented shape."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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
