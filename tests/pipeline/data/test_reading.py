"""Tables as people write them (issue 20), each read as its writer meant it: identifiers and pandas'
index left out, ISO dates and Parquet timestamps as dates, separators sniffed, decimal commas and
thousands separators read as numbers, yes/no words and Parquet booleans as one boolean feature, small
tables warned about, an all-missing target refused before a task is inferred from nothing.

The files are written here the way pandas (`to_csv`: an unnamed index column, `True`/`False`, empty
cells for NaN), R (`write.csv`: quoted names and row names, `NA`) and spreadsheets (`;` separators,
decimal commas, CRLF, a byte-order mark) write them."""

from __future__ import annotations

import csv
import datetime
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import RunConfig
from pipeline.data.load import load_dataset
from pipeline.errors import PipelineError
from pipeline.run import train_run


def cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def pandas_csv(path, columns: dict, index: bool = True, sep: str = ",", decimal: str = ".") -> str:
    """As `DataFrame.to_csv` writes it: the index first under an empty name (by default), minimal
    quoting, NaN as an empty cell, floats by repr, booleans as True / False."""
    names = list(columns)
    rows = zip(*columns.values())
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(([""] if index else []) + names)
    for i, row in enumerate(rows):
        cells = [cell(v).replace(".", decimal) if isinstance(v, float) else cell(v) for v in row]
        writer.writerow(([str(i)] if index else []) + cells)
    path.write_text(buffer.getvalue())
    return str(path)


def r_csv(path, columns: dict) -> str:
    """As R's `write.csv` writes it: quoted names, quoted row names "1".."n" under "", text quoted,
    numbers bare, NA for a missing value."""
    lines = [",".join(f'"{name}"' for name in ["", *columns])]
    for i, row in enumerate(zip(*columns.values())):
        cells = [f'"{i + 1}"']
        for value in row:
            if value is None:
                cells.append("NA")
            elif isinstance(value, str):
                cells.append(f'"{value}"')
            else:
                cells.append(cell(value))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def passengers(n: int = 200, seed: int = 0) -> dict:
    """Passengers sorted by outcome (as many public copies are), with an `id` 0..n-1 in that order, a
    weak `fare` and a `sex` that predicts half the outcome."""
    rng = np.random.default_rng(seed)
    survived = np.sort(rng.integers(0, 2, n))
    sex = np.where(
        rng.random(n) < 0.7, np.where(survived == 1, "female", "male"), rng.choice(["female", "male"], n)
    )
    return {
        "id": list(range(n)),
        "fare": [round(float(v), 2) for v in rng.gamma(2.0, 15.0, n)],
        "sex": list(sex),
        "survived": [int(v) for v in survived],
    }


def config(data: str, **values) -> RunConfig:
    return RunConfig(
        **{"name": "t", "data": data, "target": "survived", "epochs": 3, "hidden": [8], **values}
    )


def read(data: str, **values):
    said: list[str] = []
    return load_dataset(config(data, **values), said.append), said


def test_an_identifier_is_left_out_and_kept_on_request_where_a_leak_warning_names_it(tmp_path):
    path = pandas_csv(tmp_path / "titanic.csv", passengers(), index=False)
    data, said = read(path)
    assert [f.name for f in data.features] == ["fare", "sex"]
    assert "column 'id' is a different whole number on every row (0..199), like an identifier: left out" in (
        "\n".join(said)
    )
    # Kept on request, the id sorted by outcome predicts it almost perfectly: a leak, named.
    said = []
    report = train_run(config(path, keep_columns=["id"]), tmp_path / "runs", False, said.append)
    assert [f["name"] for f in report["features"]] == ["id", "fare", "sex"]
    (leak,) = json.loads((tmp_path / "runs" / "t" / "report.json").read_text())["leaks"]
    assert leak["feature"] == "id" and leak["metric"] == "accuracy" and leak["score"] >= 0.98
    assert any(s.startswith("warning: column 'id' alone predicts 'survived' almost perfectly") for s in said)
    assert not [s for s in said if "alone predicts" in s and "'fare'" in s]  # a weak feature is no leak


def test_text_with_one_value_per_row_and_parquet_integer_ids_are_identifiers(tmp_path):
    table = passengers(60)
    names = [f"Passenger {k}, Mr." for k in range(60)]
    path = pandas_csv(tmp_path / "named.csv", {"name": names, **table}, index=False)
    data, said = read(path, ignore=["id"])
    assert [f.name for f in data.features] == ["fare", "sex"]
    assert any("column 'name' has a different text on every row" in s for s in said)
    shuffled = np.random.default_rng(1).permutation(60)  # ids in any order, named like one, not a range
    parquet = tmp_path / "ids.parquet"
    pq.write_table(
        pa.table({"PassengerId": shuffled * 1000 + 7, **{k: table[k] for k in ("fare", "survived")}}), parquet
    )
    data, said = read(str(parquet))
    assert [f.name for f in data.features] == ["fare"]
    assert any("column 'PassengerId' is named like an identifier" in s for s in said)
    # A subject tested twice keeps its id: still an identifier by its name, not a feature.
    subjects = np.concatenate([shuffled[:45], shuffled[:15]]) * 1000 + 7
    pq.write_table(
        pa.table({"subject_id": subjects, "fare": table["fare"], "survived": table["survived"]}), parquet
    )
    data, said = read(str(parquet))
    assert [f.name for f in data.features] == ["fare"]
    assert any(
        "column 'subject_id' is named like an identifier and holds whole numbers, 45 different" in s
        for s in said
    )
    code = pa.table({"code": subjects, "fare": table["fare"], "survived": table["survived"]})
    pq.write_table(code, parquet)  # the same numbers under another name: a feature
    assert [f.name for f in read(str(parquet))[0].features] == ["code", "fare"]


@pytest.mark.parametrize("writer", ["pandas", "R"])
def test_the_unnamed_index_column_of_pandas_and_r_is_recognised_and_dropped(tmp_path, writer):
    columns = {k: v for k, v in passengers(80).items() if k != "id"}
    path = (pandas_csv if writer == "pandas" else r_csv)(tmp_path / f"{writer}.csv", columns)
    data, said = read(path)
    assert [f.name for f in data.features] == ["fare", "sex"]
    (line,) = [s for s in said if "counts the rows" in s]
    assert "pandas' index or R's row numbers" in line and "left out" in line


def weather(n: int = 120) -> dict:
    """A daily table (vega's seattle-weather): an ISO date per row, some missing."""
    start = datetime.date(2023, 12, 20)
    dates = [str(start + datetime.timedelta(days=k)) if k % 17 else None for k in range(n)]
    rng = np.random.default_rng(0)
    return {
        "date": dates,
        "temp": [round(float(v), 1) for v in rng.normal(12, 5, n)],
        "survived": [k % 2 for k in range(n)],
    }


def test_iso_dates_in_csv_and_parquet_dates_and_timestamps_are_one_date_feature(tmp_path):
    from contract.features import date_seconds  # (here: the rest of the module runs on older code too)

    columns = weather()
    data, said = read(pandas_csv(tmp_path / "weather.csv", columns, index=False))
    assert [(f.name, f.kind) for f in data.features] == [("date", "date"), ("temp", "numeric")]
    assert any("column 'date' holds ISO dates, so a date feature" in s for s in said)
    expected = np.array([date_seconds(d) if d else np.nan for d in columns["date"]], dtype=np.float32)
    rows = np.sort(np.concatenate(list(data.splits.values())))
    np.testing.assert_array_equal(data.x[rows, 0], expected)  # seconds since the epoch; missing is NaN
    moments = [datetime.datetime.fromisoformat(d) if d else None for d in columns["date"]]
    for kind in (pa.timestamp("us"), pa.timestamp("ms", tz="UTC"), pa.date32()):
        values = pa.array(moments, pa.timestamp("us")).cast(kind)
        path = tmp_path / f"weather-{kind}.parquet".replace(" ", "").replace(",", "-").replace("=", "-")
        pq.write_table(
            pa.table({"date": values, "temp": columns["temp"], "survived": columns["survived"]}), path
        )
        typed, _ = read(str(path))
        assert [f.to_dict() for f in typed.features] == [f.to_dict() for f in data.features], kind
        np.testing.assert_array_equal(typed.x, data.x)


def test_a_stray_value_in_a_date_column_names_its_line(tmp_path):
    columns = weather(40)
    columns["date"][30] = "soon"
    with pytest.raises(PipelineError, match=r"column 'date' line 32: 'soon' is not an ISO 8601 date"):
        read(pandas_csv(tmp_path / "weather.csv", columns, index=False))


def test_tsv_files_and_a_tab_delimiter_by_name_read_with_tabs(tmp_path):
    columns = {k: v for k, v in passengers(60).items() if k != "id"}
    expected, _ = read(pandas_csv(tmp_path / "p.csv", columns, index=False))
    tsv = pandas_csv(tmp_path / "p.tsv", columns, index=False, sep="\t")
    data, said = read(tsv)
    np.testing.assert_array_equal(data.x, expected.x)
    assert not [s for s in said if "separators" in s]  # a tab is what .tsv says: nothing to tell
    txt = pandas_csv(tmp_path / "p.txt", columns, index=False, sep="\t")
    for delimiter in ("\\t", "tab"):  # as a shell passes --delimiter '\t', and by name
        data, _ = read(txt, delimiter=delimiter)
        np.testing.assert_array_equal(data.x, expected.x)


def test_the_separator_is_sniffed_from_the_header_and_said(tmp_path):
    columns = {k: v for k, v in passengers(60).items() if k != "id"}
    expected, _ = read(pandas_csv(tmp_path / "p.csv", columns, index=False))
    for sep, name in ((";", "semicolon"), ("|", "pipe"), ("\t", "tab")):
        data, said = read(pandas_csv(tmp_path / f"{name}.csv", columns, index=False, sep=sep))
        np.testing.assert_array_equal(data.x, expected.x)
        assert f"read {name}.csv with {sep!r} ({name}) separators, sniffed from its header" in said[0]


def spreadsheet_export(path, rows: int = 60) -> str:
    """A European spreadsheet's CSV: a byte-order mark, `;` separators, decimal commas, CRLF."""
    rng = np.random.default_rng(0)
    lines = ["weight;price;colour;survived"]
    for k in range(rows):
        weight, price = rng.normal(70, 8), rng.gamma(2, 12)
        lines.append(f"{weight:.2f};{price:.2f};{'red' if k % 3 else 'blue'};{k % 2}".replace(".", ","))
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    return str(path)


def test_decimal_commas_are_detected_in_a_semicolon_table_and_said(tmp_path):
    data, said = read(spreadsheet_export(tmp_path / "export.csv"))
    assert [(f.name, f.kind) for f in data.features] == [
        ("weight", "numeric"),
        ("price", "numeric"),
        ("colour", "categorical"),
    ]
    assert 50 < data.features[0].mean < 90  # 70,12 read as 70.12
    assert data.dialect == {"delimiter": ";", "decimal": ","}  # recorded in the run, for batch prediction
    assert any(
        "with decimal commas: column 'weight' holds numbers like 3,75 (override with --decimal .)" in s
        for s in said
    )
    explicit, said = read(str(tmp_path / "export.csv"), delimiter=";", decimal=",")
    np.testing.assert_array_equal(explicit.x, data.x)
    assert not [s for s in said if "decimal commas" in s]  # given, not detected: nothing to tell


def test_thousands_separators_in_quoted_numbers_are_read_as_numbers(tmp_path):
    rng = np.random.default_rng(0)
    amounts = [float(v) for v in np.round(rng.gamma(2, 2000, 60), 2)]
    path = tmp_path / "sales.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["amount", "survived"])
        for k, amount in enumerate(amounts):
            writer.writerow([f"{amount:,.2f}", k % 2])  # "3,750.00": quoted by the writer
    assert '"' in path.read_text()
    data, said = read(str(path))
    assert data.features[0].kind == "numeric"
    rows = np.sort(np.concatenate(list(data.splits.values())))
    np.testing.assert_allclose(data.x[rows, 0], np.array(amounts, dtype=np.float32))
    assert "column 'amount' holds numbers with thousands separators (3,750): read as numbers" in said


def test_true_false_and_yes_no_text_and_parquet_booleans_are_one_boolean_feature(tmp_path):
    n = 60
    flags = [k % 3 == 0 for k in range(n)]
    member = ["yes" if k % 4 else "no" for k in range(n)]
    member[5] = None
    columns = {"flag": flags, "member": member, "survived": [k % 2 for k in range(n)]}
    data, said = read(pandas_csv(tmp_path / "b.csv", columns, index=False))
    assert [(f.name, f.kind) for f in data.features] == [("flag", "boolean"), ("member", "boolean")]
    assert any("column 'flag' holds true/false or yes/no, so a boolean feature" in s for s in said)
    rows = np.sort(np.concatenate(list(data.splits.values())))
    np.testing.assert_array_equal(data.x[rows, 0], np.array(flags, dtype=np.float32))
    assert np.isnan(data.x[rows[5], 1]) and data.x[rows[1], 1] == 1.0
    path = tmp_path / "b.parquet"
    pq.write_table(
        pa.table(
            {
                "flag": flags,
                "member": [None if m is None else m == "yes" for m in member],
                "survived": columns["survived"],
            }
        ),
        path,
    )
    typed, _ = read(str(path))
    assert [f.to_dict() for f in typed.features] == [f.to_dict() for f in data.features]
    np.testing.assert_array_equal(typed.x, data.x)


def test_a_small_table_warns_that_its_metrics_are_unstable_and_cv_gives_mean_and_sd(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 32))
    path = pandas_csv(
        tmp_path / "tiny.csv", {"a": list(a), "b": list(b), "survived": list((a + b > 0).astype(int))}
    )
    said: list[str] = []
    report = train_run(config(path, epochs=20), tmp_path / "runs", False, said.append)
    (warning,) = [s for s in said if s.startswith("warning: too few held-out rows")]
    rows = report["rows"]
    assert f"validation {rows['val']}, test {rows['test']} rows" in warning and "--cv 5" in warning
    said = []
    report = train_run(config(path, epochs=20, cv=4), tmp_path / "runs", False, said.append)
    cv, training = report["cv"], rows["train"] + rows["val"]
    assert cv["folds"] == 4 and cv["rows"] == training and len(cv["best_epochs"]) == 4
    scored = [val for _, val in cv["sizes"]]  # every row scored once, by a model that never trained on it
    assert sum(scored) == training and all(train + val == training for train, val in cv["sizes"])
    assert max(scored) - min(scored) <= 1
    accuracy = cv["metrics"]["accuracy"]
    assert len(accuracy["folds"]) == 4 and accuracy["mean"] == pytest.approx(np.mean(accuracy["folds"]))
    assert accuracy["sd"] == pytest.approx(np.std(accuracy["folds"], ddof=1))
    assert report["rows"]["train"] == training  # the final fit: every non-test row
    assert any(s.startswith(f"cross-validation over 4 folds of {training} rows: accuracy") for s in said)
    assert not [s for s in said if "--cv 5" in s]  # cross-validated: no advice to do so
    assert json.loads((tmp_path / "runs" / "t" / "report.json").read_text())["cv"] == cv


def test_a_target_without_values_stops_before_any_task_is_inferred(tmp_path):
    columns = {"a": [float(k % 7) for k in range(30)], "survived": [None] * 30}
    said: list[str] = []
    with pytest.raises(PipelineError, match="target column 'survived' has no values"):
        load_dataset(config(r_csv(tmp_path / "empty.csv", columns)), said.append)
    assert not [s for s in said if "task" in s]
