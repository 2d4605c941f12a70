"""A synthetic table of the shape in issue 9, for the data and batch-prediction benchmarks.

`write_table(path, n_rows, seed=0)` writes CSV or Parquet (by the suffix of `path`) with the columns
`id` (int), `x00`..`x29` (numbers, 2% missing), `colour` (8 text values), `city` (50 text values) and a
binary target `label` (0 / 1) that depends on x00-x03, colour and city. Rows are generated and written
in chunks of `CHUNK_ROWS`, so 20,000,000 rows need the memory of one chunk; each chunk has its own seed,
so the first n rows of a bigger table are exactly the smaller table of n rows with the same seed.
`table_config(path)` gives the training config for it (RunConfig fields, usable as flags too).

    python -m bench.tables out.csv 1000000      # the same, from the command line
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CHUNK_ROWS = 100_000
N_NUMERIC = 30
MISSING_SHARE = 0.02
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "purple", "orange"]
CITIES = [f"city-{k:02d}" for k in range(50)]
NUMERIC = [f"x{k:02d}" for k in range(N_NUMERIC)]


def table_config(path: str | Path) -> dict:
    """RunConfig fields that train a model on the table at `path` (binary target `label`)."""
    return {
        "name": Path(path).name.split(".")[0],
        "data": str(path),
        "target": "label",
        "task": "binary",
        "categorical": ["colour", "city"],
        "ignore": ["id"],
    }


def chunk(start: int, n_rows: int, seed: int):
    """Rows start..start+n_rows-1 as a pyarrow Table (seeded by the chunk's position)."""
    import pyarrow as pa

    # Always draw a whole chunk, then cut: a table's rows do not depend on its length.
    rng = np.random.default_rng([seed, start // CHUNK_ROWS])
    scale = np.array([10.0 ** (k % 4 - 1) for k in range(N_NUMERIC)])  # 0.1 .. 100: varied magnitudes
    x = np.round(rng.normal(size=(CHUNK_ROWS, N_NUMERIC)) * scale, 5)
    x[rng.random(x.shape) < MISSING_SHARE] = np.nan
    colour = rng.integers(0, len(COLOURS), CHUNK_ROWS)
    city = rng.integers(0, len(CITIES), CHUNK_ROWS)
    effect = np.nan_to_num(x[:, :4] / scale[:4]) @ np.array([1.5, -1.0, 0.8, 0.5])
    logit = effect + (colour % 3 - 1) * 0.7 + np.sin(city) * 0.5
    label = (rng.random(CHUNK_ROWS) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    x, colour, city, label = x[:n_rows], colour[:n_rows], city[:n_rows], label[:n_rows]
    columns = {"id": pa.array(np.arange(start, start + n_rows))}
    for k, name in enumerate(NUMERIC):
        columns[name] = pa.array(x[:, k], from_pandas=True)  # NaN → null: an empty cell
    columns["colour"] = pa.array(np.array(COLOURS, dtype=object)[colour])
    columns["city"] = pa.array(np.array(CITIES, dtype=object)[city])
    columns["label"] = pa.array(label)
    return pa.table(columns)


def write_table(path: str | Path, n_rows: int, seed: int = 0) -> Path:
    """Write `n_rows` rows to `path` (.csv or .parquet), one chunk in memory at a time."""
    import pyarrow.csv
    import pyarrow.parquet

    path = Path(path)
    first = chunk(0, min(n_rows, CHUNK_ROWS), seed)
    if path.suffix == ".csv":  # quotes only where needed, as spreadsheets and pandas write
        options = pyarrow.csv.WriteOptions(quoting_style="needed")
        writer = pyarrow.csv.CSVWriter(str(path), first.schema, write_options=options)
    elif path.suffix == ".parquet":
        writer = pyarrow.parquet.ParquetWriter(str(path), first.schema)
    else:
        raise ValueError(f"{path}: the suffix must be .csv or .parquet")
    with writer:
        writer.write_table(first)
        for start in range(CHUNK_ROWS, n_rows, CHUNK_ROWS):
            writer.write_table(chunk(start, min(CHUNK_ROWS, n_rows - start), seed))
    return path


if __name__ == "__main__":
    write_table(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
