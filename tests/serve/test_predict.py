"""`serve predict`: batch prediction from CSV and Parquet through Arrow, checked row for row against the
runtime's own `Model.predict(Model.encode_rows(...))`, on real files as people have them."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bench.batch_predict import train_model
from pipeline.config import builtin_config, builtin_names
from serve.model import Model
from serve.predict import PredictError, predict_table, tables
from serve.predict.encoding import BatchEncoder, CellError
from tests.conftest import run_cli

AUTO_MPG = builtin_config("auto-mpg").data


def read_rows(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def write_rows(path, header, rows, **dialect) -> Path:
    with open(path, "w", newline="", encoding=dialect.pop("encoding", "utf-8")) as f:
        csv.writer(f, lineterminator=dialect.pop("lineterminator", "\n"), **dialect).writerows(
            [header, *rows]
        )
    return Path(path)


def expected_columns(model_dir, rows: list[dict]) -> dict[str, list]:
    """The runtime's answer for named raw rows, as the output's columns (label + p_<class>, or
    predicted_<target>), through `encode_rows`, `predict` and `describe`."""
    runtime = Model.load(model_dir)
    described = runtime.describe(runtime.predict(runtime.encode_rows(rows)))
    if "prediction" in runtime.outputs:
        return {f"predicted_{t}": [d[t] for d in described] for t in runtime.manifest["target_names"]}
    columns = {"label": [d["label"] for d in described]}
    for name in runtime.manifest["class_names"]:
        columns[f"p_{name}"] = [d["probabilities"][name] for d in described]
    return columns


def feature_rows(model_dir, header, rows) -> list[dict]:
    names = {f["name"] for f in Model.load(model_dir).features}
    return [{k: v for k, v in zip(header, row) if k in names} for row in rows]


def read_output(path) -> dict[str, list]:
    if Path(path).suffix == ".parquet":
        return pq.read_table(path).to_pydict()
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False)).to_pydict()


def assert_same_predictions(written: dict, expected: dict) -> None:
    """The prediction columns of `expected` (label, p_*, predicted_*) are in `written`, row for row."""
    for name, values in expected.items():
        if name != "label" and not name.startswith(("p_", "predicted_")):
            continue
        if name == "label":
            assert [str(v) for v in written[name]] == values
        else:
            assert_allclose(written[name], values, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory) -> Path:
    """A binary model with text categorical features (colour, city), trained on the bench's table."""
    return train_model(tmp_path_factory.mktemp("synthetic"), 2000)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("name", builtin_names())
def test_batch_prediction_matches_the_runtime_row_for_row(repository, tmp_path, name, fmt):
    source = builtin_config(name).data
    header, rows = read_rows(source)
    data = source
    if fmt == "parquet":  # columns typed as Arrow infers them: int64, and double with nulls for blanks
        data = tmp_path / "table.parquet"
        pq.write_table(pacsv.read_csv(source), data)
    out = tmp_path / f"out.{fmt}"
    assert predict_table(repository / name, data, out) == len(rows)
    assert_same_predictions(
        read_output(out), expected_columns(repository / name, feature_rows(repository / name, header, rows))
    )


def test_spreadsheet_csv_bom_crlf_quoted_separators_and_semicolons(repository, tmp_path):
    header, rows = read_rows(AUTO_MPG)
    car = header.index("car_name")
    for row in rows[::3]:
        row[car] = row[car].replace(" ", "; ", 1) + ', "the" one'  # the separator and quotes inside a field
    padded = [f" {name} " for name in header]  # spreadsheets leave spaces around names
    data = write_rows(
        tmp_path / "cars.csv", padded, rows, delimiter=";", lineterminator="\r\n", encoding="utf-8-sig"
    )
    assert data.read_bytes().startswith("\ufeff mpg ;".encode())  # a byte-order mark, a padded name
    out = tmp_path / "out.csv"
    assert predict_table(repository / "auto-mpg", data, out, keep=["car_name"], delimiter=";") == len(rows)
    written = read_output(out)
    assert list(written) == ["car_name", "predicted_mpg"]
    assert written["car_name"] == [row[car] for row in rows]
    expected = expected_columns(repository / "auto-mpg", feature_rows(repository / "auto-mpg", header, rows))
    assert_same_predictions(written, expected)
    with open(out, newline="") as f:  # the kept text comes back through any CSV reader
        assert [r["car_name"] for r in csv.DictReader(f)] == [row[car] for row in rows]


@pytest.mark.parametrize("name", ["cars.tsv", "cars.csv.gz"])
def test_tsv_with_tabs_and_compressed_csv(repository, tmp_path, name):
    header, rows = read_rows(AUTO_MPG)
    text = write_rows(tmp_path / "plain", header, rows, delimiter="\t" if name.endswith(".tsv") else ",")
    data = tmp_path / name
    data.write_bytes(gzip.compress(text.read_bytes()) if name.endswith(".gz") else text.read_bytes())
    out = tmp_path / "out.csv"
    predict_table(repository / "auto-mpg", data, out)
    expected = expected_columns(repository / "auto-mpg", feature_rows(repository / "auto-mpg", header, rows))
    assert_same_predictions(read_output(out), expected)


# Cells where the runtime's rules are subtle: case and padding of missing tokens, numbers Python reads
# but Arrow's parser does not, numeric codes in categorical columns, text never seen in training.
TRICKY_NUMBERS = ["1.5", " 2.5 ", "", " NA ", "None", "?", "n/a", "NULL", "nan", "-nan", "1_000", "1e3", "+7"]
TRICKY_CATEGORIES = ["red", " red ", "RED", "pink", "3", " 2.0 ", "", "na", "None", "blue", "7", "?", "x"]


def tricky_rows(model_dir) -> tuple[list[str], list[list[str]]]:
    runtime = Model.load(model_dir)
    header = [f["name"] for f in runtime.features]
    rows = []
    for i in range(len(TRICKY_NUMBERS)):
        rows.append(
            [
                TRICKY_CATEGORIES[(i + j) % len(TRICKY_CATEGORIES)]
                if f["kind"] == "categorical"
                else TRICKY_NUMBERS[(i + j) % len(TRICKY_NUMBERS)]
                for j, f in enumerate(runtime.features)
            ]
        )
    return header, rows


def test_encoding_equals_encode_rows_on_tricky_cells(synthetic_model):
    header, rows = tricky_rows(synthetic_model)
    runtime = Model.load(synthetic_model)
    batch = pa.RecordBatch.from_pydict({name: [row[j] for row in rows] for j, name in enumerate(header)})
    expected = runtime.encode_rows([dict(zip(header, row)) for row in rows])
    assert_array_equal(BatchEncoder(runtime).encode(batch), expected)
    colour = header.index("colour")
    assert np.isnan(expected[:, colour]).sum() >= 4 and (expected[:, colour] == 3.0).any()  # the rules bite


def test_tricky_cells_in_a_csv_file_match_the_runtime(synthetic_model, tmp_path):
    header, rows = tricky_rows(synthetic_model)
    data = write_rows(tmp_path / "tricky.csv", header, rows * 20)
    out = tmp_path / "out.csv"
    predict_table(synthetic_model, data, out)
    assert_same_predictions(
        read_output(out), expected_columns(synthetic_model, [dict(zip(header, r)) for r in rows * 20])
    )


def test_a_column_arrow_refuses_late_in_the_file_is_reread_as_text(repository, tmp_path, monkeypatch):
    # Small blocks: the padded token sits many batches in; the column is re-read as text from there,
    # and every row comes out exactly once.
    monkeypatch.setattr(tables, "BLOCK_BYTES", 1024)
    header, rows = read_rows(AUTO_MPG)
    rows[-5][header.index("horsepower")] = " NA "
    data = write_rows(tmp_path / "cars.csv", header, rows)
    out = tmp_path / "out.parquet"
    assert predict_table(repository / "auto-mpg", data, out, keep=["car_name"]) == len(rows)
    written = read_output(out)
    assert written["car_name"] == [row[header.index("car_name")] for row in rows]
    expected = expected_columns(repository / "auto-mpg", feature_rows(repository / "auto-mpg", header, rows))
    assert_same_predictions(written, expected)


def with_ids(header, rows):
    return ["id", *header], [[str(i), *row] for i, row in enumerate(rows)]


def test_a_glob_of_csv_files_is_one_table(repository, tmp_path):
    header, rows = with_ids(*read_rows(AUTO_MPG))
    (tmp_path / "parts").mkdir()
    for k in range(3):
        write_rows(tmp_path / "parts" / f"part-{k}.csv", header, rows[k * 150 : (k + 1) * 150])
    out = tmp_path / "out.csv"
    count = predict_table(repository / "auto-mpg", str(tmp_path / "parts" / "part-*.csv"), out, keep=["id"])
    assert count == len(rows)
    written = read_output(out)
    assert written["id"] == [int(r[0]) for r in rows]  # files in name order, rows in file order
    expected = expected_columns(repository / "auto-mpg", feature_rows(repository / "auto-mpg", header, rows))
    assert_same_predictions(written, expected)


def test_the_files_read_are_those_training_reads(repository, tmp_path):
    """contract.tables' rule, the one training reads `--data` by: a folder skips .txt files and names
    starting with . or _ (at any depth), a glob skips such names too, and a file named explicitly is read
    as CSV whatever its suffix."""
    header, rows = with_ids(*read_rows(AUTO_MPG))
    folder = tmp_path / "cars"
    (folder / "_temporary").mkdir(parents=True)
    write_rows(folder / "part-0.csv", header, rows[:100])
    write_rows(folder / "notes.txt", header, rows[100:110])  # more often a README than data
    write_rows(folder / ".part-1.csv", header, rows[110:120])  # an interrupted write
    write_rows(folder / "_part-2.csv", header, rows[120:130])
    write_rows(folder / "_temporary" / "part-3.csv", header, rows[130:140])
    explicit = write_rows(tmp_path / "cars.data", header, rows[:100])
    model = repository / "auto-mpg"
    expected = expected_columns(model, feature_rows(model, header, rows[:100]))
    for data in (folder, str(folder / "*.csv"), explicit):
        out = tmp_path / "out.csv"
        assert predict_table(model, data, out, keep=["id"]) == 100, data
        written = read_output(out)
        assert written["id"] == list(range(100)), data
        assert_same_predictions(written, expected)


def test_a_hive_partitioned_parquet_directory_is_one_table(repository, tmp_path):
    header, rows = with_ids(*read_rows(AUTO_MPG))
    origin = header.index("origin")
    root = tmp_path / "cars"
    for code in ("1", "2", "3"):
        part = [r for r in rows if r[origin] == code]
        columns = {name: [r[j] for r in part] for j, name in enumerate(header) if name != "origin"}
        (root / f"origin={code}").mkdir(parents=True)
        pq.write_table(pa.table(columns), root / f"origin={code}" / "part-0.parquet")
    (root / "_SUCCESS").write_text("")  # what Spark leaves behind; not a table file
    out = tmp_path / "out.parquet"
    assert predict_table(repository / "auto-mpg", root, out, keep=["id"]) == len(rows)
    written = read_output(out)
    order = [int(i) for i in written["id"]]  # rows come partition by partition
    assert sorted(order) == list(range(len(rows)))
    reordered = [rows[i] for i in order]
    expected = expected_columns(
        repository / "auto-mpg", feature_rows(repository / "auto-mpg", header, reordered)
    )
    assert_same_predictions(written, expected)


def test_keep_columns_come_first_and_parquet_output_round_trips(repository, tmp_path):
    source = builtin_config("zoo-multiclass").data
    header, rows = read_rows(source)
    as_csv, as_parquet = tmp_path / "out.csv", tmp_path / "out.parquet"
    predict_table(repository / "zoo-multiclass", source, as_csv, keep=["animal_name", "legs"])
    predict_table(repository / "zoo-multiclass", source, as_parquet, keep=["animal_name", "legs"])
    table = pq.read_table(as_parquet)
    classes = Model.load(repository / "zoo-multiclass").manifest["class_names"]
    assert table.column_names == ["animal_name", "legs", "label", *(f"p_{c}" for c in classes)]
    assert all(table.schema.field(f"p_{c}").type == pa.float32() for c in classes)
    written = table.to_pydict()
    assert written["animal_name"] == [r[0] for r in rows] and written["legs"][:2] == [4.0, 4.0]
    assert_same_predictions(written, read_output(as_csv))
    expected = expected_columns(
        repository / "zoo-multiclass", feature_rows(repository / "zoo-multiclass", header, rows)
    )
    assert_same_predictions(written, expected)


def test_csv_on_standard_output_and_an_empty_table(repository, tmp_path):
    result = run_cli(
        "-m",
        "serve",
        "predict",
        "--model",
        str(repository / "zoo-mammal"),
        "--data",
        builtin_config("zoo-mammal").data,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "label,p_other,p_mammal" and len(lines) == 102
    assert lines[1].split(",")[0] in ("mammal", "other") and '"' not in result.stdout  # quoted only if needed
    header, _ = read_rows(AUTO_MPG)
    empty = write_rows(tmp_path / "empty.csv", header, [])
    assert predict_table(repository / "auto-mpg", empty, tmp_path / "out.csv") == 0
    assert (tmp_path / "out.csv").read_text() == "predicted_mpg\n"


def bad_tables(tmp_path: Path) -> dict[str, str]:
    header, rows = read_rows(AUTO_MPG)
    weight = header.index("weight")

    def variant(name, change, **dialect):
        copy = [list(r) for r in rows]
        change(copy)
        return str(write_rows(tmp_path / name, header, copy, **dialect))

    features = [j for j, h in enumerate(header) if h not in ("mpg", "car_name")]
    text_parquet = tmp_path / "text.parquet"
    columns = {name: [r[j] for r in rows] for j, name in enumerate(header)}
    columns["weight"][6] = "heavy"
    pq.write_table(pa.table(columns), text_parquet)
    return {
        "text": variant("text.csv", lambda r: r[2].__setitem__(weight, "abc")),
        "infinite": variant("inf.csv", lambda r: r[9].__setitem__(weight, "inf")),
        "fields": variant("fields.csv", lambda r: r[4].append("extra")),
        "blank": variant("blank.csv", lambda r: [r[5].__setitem__(j, " ") for j in features]),
        "parquet": str(text_parquet),
        "nothing": str(tmp_path / "no-such-file.csv"),
    }


@pytest.mark.parametrize(
    "case,out,message",
    [
        ("text", "out.csv", "text.csv line 4: column 'weight': 'abc' is not a number"),
        ("infinite", "out.csv", "inf.csv line 11: column 'weight': inf is infinite or beyond the FP32 range"),
        ("fields", "out.csv", "fields.csv line 6: 10 fields where the header has 9"),
        ("blank", "out.csv", "blank.csv line 7: every feature is missing (the model takes cylinders, "),
        ("parquet", "out.parquet", "text.parquet row 7: column 'weight': 'heavy' is not a number"),
        ("nothing", "out.csv", "no such file: "),
        ("model", "out.csv", "cannot load"),
        ("output", "out.json", "out.json: the output must end in .csv or .parquet"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_previous_output(
    repository, tmp_path, case, out, message
):
    (tmp_path / "in").mkdir()
    data = bad_tables(tmp_path / "in").get(case, str(AUTO_MPG))
    model = repository / ("no-such-model" if case == "model" else "auto-mpg")
    (tmp_path / "out").mkdir()
    previous = tmp_path / "out" / out
    previous.write_text("a previous good result\n")
    result = run_cli("-m", "serve", "predict", "--model", str(model), "--data", data, "--out", str(previous))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert previous.read_text() == "a previous good result\n"  # untouched, and no partial file beside it
    assert os.listdir(tmp_path / "out") == [out]


def test_a_failure_after_many_rows_leaves_no_file(repository, tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "BLOCK_BYTES", 1024)  # many batches written before the bad one
    header, rows = read_rows(AUTO_MPG)
    rows[-1][header.index("cylinders")] = "eight"
    data = write_rows(tmp_path / "cars.csv", header, rows)
    (tmp_path / "out").mkdir()
    with pytest.raises(PredictError, match=rf"line {len(rows) + 1}: column 'cylinders': 'eight' is not"):
        predict_table(repository / "auto-mpg", data, tmp_path / "out" / "predictions.parquet")
    assert os.listdir(tmp_path / "out") == []


def test_an_output_in_a_missing_directory_is_refused_before_reading(repository, tmp_path):
    with pytest.raises(PredictError, match=r"cannot write .*out.csv: no directory .*nope"):
        predict_table(repository / "auto-mpg", AUTO_MPG, tmp_path / "nope" / "out.csv")
    assert not (tmp_path / "nope").exists()


def test_a_categorical_cell_beyond_fp32_names_its_row(synthetic_model):
    header, rows = tricky_rows(synthetic_model)
    rows[3][header.index("city")] = "1e39"
    batch = pa.RecordBatch.from_pydict({name: [row[j] for row in rows] for j, name in enumerate(header)})
    with pytest.raises(CellError) as error:
        BatchEncoder(Model.load(synthetic_model)).encode(batch)
    assert (error.value.row, error.value.column) == (3, "city") and "'1e39' is infinite" in str(error.value)


WITHOUT_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # as if the batch extra were not installed
from serve.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_pyarrow_predict_says_how_to_install_it(repository, tmp_path):
    result = run_cli(
        "-c", WITHOUT_PYARROW, "predict", "--model", str(repository / "auto-mpg"), "--data", str(AUTO_MPG)
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: batch prediction needs pyarrow: pip install 'tabular-deploy[batch]' (or make install)"
    ]
