"""One table-resolution rule (contract.tables): the same `--data` spec names the same files, in the same
order, for training (pipeline.data.table) and for batch prediction (serve.predict.tables), and the files
are those the documented rule names."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from contract.errors import ContractError
from contract.tables import resolve
from pipeline.data.table import open_table
from pipeline.errors import PipelineError
from serve.predict.tables import TableError, read_chunks

HEADER = "x,label\n"


def write(path: Path, rows: int = 3, text: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else HEADER + "".join(f"{k},{k % 2}\n" for k in range(rows))
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_text(body.replace(",", "\t") if ".tsv" in path.name else body)
    return path


@pytest.fixture
def lake(tmp_path) -> Path:
    """A folder as Spark, people and editors leave them."""
    root = tmp_path / "lake"
    write(root / "a.csv")
    write(root / "b.tsv")
    write(root / "c.csv.gz")
    write(root / "region=eu" / "d.csv")
    write(root / "notes.txt", text="read me\n")  # more often a README than data
    write(root / "_SUCCESS", text="")
    write(root / ".a.csv.crc", text="xx")
    write(root / "_temporary" / "e.csv")
    write(root / ".hidden" / "f.csv")
    write(root / "odd.data")  # no table suffix: skipped in a folder, read when named
    return root


def training_files(spec: str) -> list[Path]:
    return [Path(p) for p in open_table(spec).files]


def prediction_files(spec: str) -> list[Path]:
    return list(dict.fromkeys(chunk.path for chunk in read_chunks(spec, {"x": "number"})))


def test_training_and_batch_prediction_read_the_same_files(lake):
    specs = {
        str(lake): ["a.csv", "b.tsv", "c.csv.gz", "region=eu/d.csv"],
        str(lake / "*.csv"): ["a.csv"],
        str(lake / "**" / "*.csv"): ["a.csv", "region=eu/d.csv"],  # hidden and _ names skipped in globs
        str(lake / "*.txt"): ["notes.txt"],  # a glob may name .txt files
        str(lake / "odd.data"): ["odd.data"],  # a file named explicitly is read whatever its suffix
        str(lake / "b.tsv"): ["b.tsv"],
        str(lake / "c.csv.gz"): ["c.csv.gz"],
    }
    for spec, expected in specs.items():
        named = [lake / name for name in expected]
        assert resolve(spec).files == named, spec
        if spec.endswith(".txt"):
            continue  # "read me" is one column: the rule names it, the readers then refuse it alike
        assert training_files(spec) == named, spec
        assert prediction_files(spec) == named, spec


def test_tsv_and_gzip_are_read_alike_by_both_sides(lake):
    for name in ("b.tsv", "c.csv.gz"):
        table = open_table(str(lake / name))
        assert table.columns == ["x", "label"]
        chunks = list(read_chunks(str(lake / name), {"x": "number"}))
        assert sum(c.batch.num_rows for c in chunks) == 3


def test_specs_that_name_nothing_are_refused_alike(tmp_path):
    write(tmp_path / "x.parquet.txt", text="")
    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty / "readme.txt", text="no data\n")
    for spec in (str(tmp_path / "missing.csv"), str(empty), str(tmp_path / "nothing-*.csv")):
        with pytest.raises(ContractError):
            resolve(spec)
        with pytest.raises(PipelineError):
            open_table(spec)
        with pytest.raises(TableError):
            list(read_chunks(spec, {"x": "number"}))


def test_csv_and_parquet_together_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write(tmp_path / "a.csv")
    pq.write_table(pa.table({"x": [1.0], "label": [0]}), tmp_path / "b.parquet")
    with pytest.raises(ContractError, match="mixes CSV and Parquet"):
        resolve(str(tmp_path))
