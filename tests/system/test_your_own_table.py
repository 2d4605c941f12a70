"""One table written as a European pandas user writes it (`to_csv(sep=";", decimal=",")`: the index
first under an empty name, decimal commas, True / False, ISO dates with some missing) goes through
`export all --data` and `serve predict` with nothing but --data and --target, and every path encodes
it the same way: training's reader, the exported graph (dates derived inside it, parity-checked on the
edge dates), batch prediction from the CSV and from a typed Parquet copy, and the named-feature rows of
the runtime (ISO text, yes / no, JSON true / false)."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_allclose

from pipeline.config import RunConfig
from pipeline.data.load import load_dataset
from serve.errors import BadRequest
from serve.model import Model
from tests.conftest import quiet, run_cli

N = 240


def table() -> dict:
    rng = np.random.default_rng(0)
    start = datetime.datetime(2023, 11, 1, 6, 0)
    when = [start + datetime.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 500, N)]
    holiday = rng.random(N) < 0.3
    temp = np.round(rng.normal(12, 6, N), 2)
    city = rng.choice(["Lyon", "Graz", "Gent"], N)
    busy = (temp > 12) ^ holiday ^ (np.array([w.weekday() >= 5 for w in when]))
    return {
        "when": [None if k % 19 == 0 else w.isoformat(sep=" ") for k, w in enumerate(when)],
        "holiday": holiday.tolist(),
        "temp": temp.tolist(),
        "city": city.tolist(),
        "busy": ["yes" if b else "no" for b in busy],
    }


def write_european_pandas_csv(path, columns: dict) -> None:
    lines = [";".join(["", *columns])]
    for i, row in enumerate(zip(*columns.values())):
        cells = [str(i)]
        for value in row:
            cells.append(
                ""
                if value is None
                else repr(value).replace(".", ",")
                if isinstance(value, float)
                else str(value)
            )
        lines.append(";".join(cells))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("own-table")
    columns = table()
    csv_file = scratch / "visits.csv"
    write_european_pandas_csv(csv_file, columns)
    result = run_cli(
        "-m", "export", "all", "--data", str(csv_file), "--target", "busy", "--epochs", "5", "--quiet",
        "--runs-dir", str(scratch / "runs"), "--repository", str(scratch / "models"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return scratch, columns, csv_file, scratch / "models" / "visits"


def test_the_model_takes_dates_and_booleans_as_their_writer_meant_them(exported):
    *_, model_dir = exported
    manifest = json.loads((model_dir / "manifest.json").read_text())
    kinds = {f["name"]: f["kind"] for f in manifest["features"]}
    assert kinds == {"when": "date", "holiday": "boolean", "temp": "numeric", "city": "categorical"}
    config = manifest["training"]["config"]
    assert (config["delimiter"], config["decimal"]) == (";", ",")  # recorded: batch prediction's default
    backends = {b["backend"]: b for b in manifest["parity"]["backends"]}
    assert (
        backends["onnxruntime-cpu"]["status"] == "passed" and backends["torch.compile"]["status"] == "passed"
    )


def test_batch_prediction_encodes_the_csv_and_a_typed_parquet_copy_as_training_did(exported):
    scratch, columns, csv_file, model_dir = exported
    training = load_dataset(RunConfig(name="visits", data=str(csv_file), target="busy"), quiet)
    model = Model.load(model_dir)
    expected = model.run(training.x)  # the rows in table order, as training encoded them
    out = scratch / "predictions.csv"
    result = run_cli(
        "-m", "serve", "predict", "--model", str(model_dir), "--data", str(csv_file), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    written = pacsv.read_csv(out).to_pydict()
    classes = manifest_classes(model_dir)
    assert written["label"] == [classes[k] for k in expected["label"]]
    assert_allclose(written[f"p_{classes[1]}"], expected["probabilities"][:, 0], rtol=1e-6, atol=1e-7)
    typed = pa.table(
        {
            "when": pa.array(
                [None if w is None else datetime.datetime.fromisoformat(w) for w in columns["when"]],
                pa.timestamp("us"),
            ),
            "holiday": pa.array(columns["holiday"]),
            "temp": pa.array(columns["temp"]),
            "city": pa.array(columns["city"]).dictionary_encode(),
        }
    )
    pq.write_table(typed, scratch / "visits.parquet")
    out = scratch / "predictions.parquet"
    result = run_cli(
        "-m",
        "serve",
        "predict",
        "--model",
        str(model_dir),
        "--data",
        str(scratch / "visits.parquet"),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert_allclose(
        pq.read_table(out).column(f"p_{classes[1]}").to_numpy(),
        expected["probabilities"][:, 0],
        rtol=1e-6,
        atol=1e-7,
    )


def manifest_classes(model_dir) -> list[str]:
    return json.loads((model_dir / "manifest.json").read_text())["class_names"]


def test_named_features_take_iso_text_and_yes_no_as_training_encodes_them(exported):
    _, columns, csv_file, model_dir = exported
    training = load_dataset(RunConfig(name="visits", data=str(csv_file), target="busy"), quiet)
    model = Model.load(model_dir)
    spellings = [True, "yes", "TRUE", 1]  # JSON true, and words as people type them
    rows = [
        {
            "when": columns["when"][k],
            "holiday": spellings[k % 4] if columns["holiday"][k] else [False, "no", "False", 0][k % 4],
            "temp": columns["temp"][k],
            "city": columns["city"][k],
        }
        for k in range(40)
    ]
    np.testing.assert_array_equal(model.encode_rows(rows), training.x[:40])
    with pytest.raises(BadRequest, match=r"row 0: feature 'when': 'soon' is not an ISO 8601 date"):
        model.encode_rows([{**rows[0], "when": "soon"}])
    with pytest.raises(BadRequest, match=r"row 0: feature 'holiday': 'maybe' is not true/false or yes/no"):
        model.encode_rows([{**rows[0], "holiday": "maybe"}])


def test_batch_cells_of_dates_and_booleans_follow_the_runtime_and_a_bad_one_names_its_line(exported):
    scratch, _, _, model_dir = exported
    from serve.predict.encoding import BatchEncoder

    model = Model.load(model_dir)
    when = [
        "2024-01-05",
        " 2024-02-29T10:30:00Z ",
        "2024-03-01 10:30+01:00",
        "NA",
        "",
        "1969-12-31T23:59:59.5",
    ]
    holiday = ["yes", " No ", "TRUE", "false", "?", "1"]
    rows = [{"when": w, "holiday": h, "temp": "1,5", "city": "Lyon"} for w, h in zip(when, holiday)]
    batch = pa.RecordBatch.from_pydict({k: [r[k] for r in rows] for k in ("when", "holiday", "temp", "city")})
    encoded = BatchEncoder(model, decimal=",").encode(batch)
    np.testing.assert_array_equal(
        encoded[:, :2], model.encode_rows([{**r, "temp": 1.5} for r in rows])[:, :2]
    )
    assert encoded[0, 0] == 1704412800.0 and np.isnan(encoded[3:5, 0]).all() and encoded[5, 1] == 1.0
    lines = (scratch / "visits.csv").read_text().splitlines()
    lines[4] = lines[4].replace(lines[4].split(";")[1], "soon", 1)
    bad = scratch / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = run_cli("-m", "serve", "predict", "--model", str(model_dir), "--data", str(bad))
    assert result.returncode == 2
    message = f"error: {bad} line 5: column 'when': 'soon' is not an ISO 8601 date (2024-01-31 or 2024-01-31T"
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_thousands_separators_and_a_tab_delimiter_by_name_in_batch_prediction(exported):
    scratch, *_, model_dir = exported
    model = Model.load(model_dir)
    rows = [
        {"when": "2024-01-05", "holiday": "no", "temp": 1234.5, "city": "Graz"},
        {"when": "2024-01-06", "holiday": "yes", "temp": -2.25, "city": "Gent"},
    ]
    text = "when\tholiday\ttemp\tcity\n2024-01-05\tno\t1,234.5\tGraz\n2024-01-06\tyes\t-2.25\tGent\n"
    data = scratch / "grouped.txt"  # a .txt is read with commas unless told: --delimiter tab
    data.write_text(text)
    out = scratch / "grouped.csv"
    result = run_cli(
        "-m", "serve", "predict", "--model", str(model_dir), "--data", str(data), "--out", str(out),
        "--delimiter", "tab", "--decimal", ".",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = model.run(model.encode_rows(rows))["probabilities"][:, 0]
    classes = manifest_classes(model_dir)
    assert_allclose(pacsv.read_csv(out).column(f"p_{classes[1]}").to_numpy(), expected, rtol=1e-6, atol=1e-7)
