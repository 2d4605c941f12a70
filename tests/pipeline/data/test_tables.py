"""Tables as people have them: CSV and Parquet, files, folders and globs, streamed or in memory, the
inference of task and column kinds, and the statistics of the streamed path against numpy's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import RunConfig
from pipeline.data import csv_table, parquet_table
from pipeline.data.dataset import Dataset
from pipeline.data.encoding import SPLIT_CODES, prepare
from pipeline.data.load import load_dataset
from pipeline.data.streaming import StreamingDataset, position_split
from pipeline.data.table import open_table
from pipeline.errors import PipelineError
from pipeline.run import train_run
from tests.conftest import quiet, run_cli

COLOURS = ["red", "green", "blue", "black"]


def rows_table(n: int, seed: int = 0) -> pa.Table:
    """id, three numeric columns (one with ~5% missing), a text column, a binary label that depends on
    them (separable up to a little noise)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    colour = rng.integers(0, len(COLOURS), n)
    label = (a + 0.8 * b + (colour == 1) - 0.3 > 0).astype(np.int64)
    c[rng.random(n) < 0.05] = np.nan
    return pa.table(
        {
            "id": np.arange(n),
            "a": np.round(a, 5),
            "b": np.round(b, 5),
            "c": pa.array(np.round(c, 5), from_pandas=True),
            "colour": pa.array(np.array(COLOURS)[colour]),
            "label": label,
        }
    )


def write(table: pa.Table, path) -> str:
    if str(path).endswith(".parquet"):
        pq.write_table(table, path, row_group_size=max(len(table) // 4, 1))
    else:
        pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="none"))
    return str(path)


def config(data: str, **values) -> RunConfig:
    base = {"name": "t", "target": "label", "ignore": ["id"], "epochs": 5, "hidden": [8]}
    return RunConfig(data=data, **{**base, **values})


def test_csv_and_parquet_of_the_same_rows_give_the_same_model(tmp_path):
    table = rows_table(600)
    weights = []
    for name in ("t.csv", "t.parquet"):
        report = train_run(
            config(write(table, tmp_path / name)), tmp_path / name.replace(".", "-"), False, quiet
        )
        assert report["task"] == "binary" and not report["streamed"]
        weights.append(
            torch.load(tmp_path / name.replace(".", "-") / "t" / "checkpoint.pt", weights_only=True)
        )
    assert weights[0]["spec"] == weights[1]["spec"]
    for key, value in weights[0]["state_dict"].items():
        assert torch.equal(value, weights[1]["state_dict"][key]), key


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_statistics_equal_numpy_on_the_same_training_rows(tmp_path, suffix, monkeypatch):
    monkeypatch.setattr(csv_table, "CSV_BLOCK", 4096)  # many record batches, so the merging is exercised
    monkeypatch.setattr(parquet_table, "PARQUET_BATCH", 97)
    table = rows_table(3000)
    streamed = load_dataset(config(write(table, tmp_path / f"t{suffix}"), memory_budget="20KB"), quiet)
    assert isinstance(streamed, StreamingDataset)
    # The expected values, from the whole table at once in float64 with the same positional split.
    values = {name: table.column(name).to_numpy(zero_copy_only=False) for name in ("a", "b", "c")}
    n = len(table)
    train = position_split(np.arange(n), 0, 0.2, 0.2) == SPLIT_CODES["train"]
    assert streamed.rows["train"] == train.sum() and sum(streamed.rows.values()) == n
    features = {f.name: f for f in streamed.features}
    for name, column in values.items():
        seen = column[train].astype(np.float32).astype(np.float64)
        seen = seen[~np.isnan(seen)]
        np.testing.assert_allclose(features[name].mean, seen.mean(), rtol=1e-6)
        np.testing.assert_allclose(features[name].std, seen.std(), rtol=1e-6)
        assert features[name].missing == int(np.isnan(column[train]).sum())
    colour = features["colour"]
    assert colour.kind == "categorical" and colour.labels == sorted(COLOURS)
    # ... and the encoded rows of each split are the table's rows of that split, in order.
    x = np.concatenate([x for x, _ in streamed.chunks("train")])
    np.testing.assert_array_equal(x[:, 0], values["a"][train].astype(np.float32))
    codes = np.array([sorted(COLOURS).index(c) for c in table.column("colour").to_pylist()])
    np.testing.assert_array_equal(x[:, 3], codes[train])


def test_in_memory_statistics_come_from_the_training_split(tmp_path):
    table = rows_table(500)
    data = load_dataset(config(write(table, tmp_path / "t.csv")), quiet)
    assert isinstance(data, Dataset)
    a = table.column("a").to_numpy().astype(np.float32).astype(np.float64)[data.splits["train"]]
    np.testing.assert_allclose(data.features[0].mean, a.mean(), rtol=1e-6)
    np.testing.assert_allclose(data.features[0].std, a.std(), rtol=1e-6)


def test_a_table_over_the_memory_budget_is_streamed_and_trains(tmp_path):
    path = write(rows_table(4000), tmp_path / "t.parquet")
    report = train_run(
        config(path, memory_budget="64KB", epochs=8, batch_size=64), tmp_path / "runs", False, quiet
    )
    assert report["streamed"]
    assert report["test_metrics"]["accuracy"] > 0.9  # separable up to noise
    rows = report["rows"]
    assert sum(rows.values()) == 4000 and 0.5 < rows["train"] / 4000 < 0.7
    checkpoint = torch.load(tmp_path / "runs" / "t" / "checkpoint.pt", weights_only=True)
    assert checkpoint["held_out"].shape == (rows["test"], 4)


def test_real_world_csv_forms_read_like_a_plain_file(tmp_path):
    plain = "a,colour,label\n1.5,red,0\n2,blue,1\n,red,0\n" + '3,"x,y",1\n4,red,1\n5,blue,0\n' * 5
    expected = load_dataset(config(write_text(tmp_path / "plain.csv", plain), ignore=[]), quiet)
    forms = {
        "bom-crlf.csv": "\ufeff" + plain.replace("\n", "\r\n"),
        "semicolon.csv": plain.replace(",", ";").replace('"x;y"', '"x,y"'),
        "padded-missing.csv": plain.replace("\n,red", "\n  NA ,red"),
    }
    for name, text in forms.items():
        delimiter = ";" if "semicolon" in name else ","
        data = load_dataset(config(write_text(tmp_path / name, text), ignore=[], delimiter=delimiter), quiet)
        np.testing.assert_array_equal(data.x, expected.x, err_msg=name)
        assert [f.to_dict() for f in data.features] == [f.to_dict() for f in expected.features], name
    assert expected.features[1].labels == ["blue", "red", "x,y"]  # the quoted separator stays in the value


def write_text(path, text: str) -> str:
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def test_a_directory_with_hive_partitions_and_a_glob_are_one_table(tmp_path):
    table = rows_table(400)
    halves = [table.slice(0, 200), table.slice(200)]
    for k, half in enumerate(halves):
        (tmp_path / "parts" / f"region={'ns'[k]}").mkdir(parents=True)
        write(half, tmp_path / "parts" / f"region={'ns'[k]}" / "part.parquet")
        write(half, tmp_path / f"part-{k}.csv")
    whole = load_dataset(config(write(table, tmp_path / "whole.csv")), quiet)
    from_glob = load_dataset(config(str(tmp_path / "part-*.csv")), quiet)
    np.testing.assert_array_equal(from_glob.x, whole.x)
    folder = load_dataset(config(str(tmp_path / "parts")), print)
    names = [f.name for f in folder.features]
    assert names[-1] == "region" and folder.features[-1].labels == ["n", "s"]
    np.testing.assert_array_equal(folder.x[:, :-1], whole.x)


INFERENCE = [  # x repeats its values (a column with a different whole number per row is an identifier)
    ("two values", "x,y\n" + "1,yes\n2,no\n" * 10, "binary", "2 distinct values (no, yes)"),
    (
        "few integers",
        "x,y\n" + "".join(f"{i % 9},{i % 4}\n" for i in range(40)),
        "multiclass",
        "4 distinct whole",
    ),
    (
        "text values",
        "x,y\n" + "".join(f"{i % 9},{'abc'[i % 3]}\n" for i in range(30)),
        "multiclass",
        "some of them text",
    ),
    (
        "real numbers",
        "x,y\n" + "".join(f"{i % 9},{i * 0.37:.2f}\n" for i in range(40)),
        "regression",
        "numbers",
    ),
]


@pytest.mark.parametrize("case,text,task,why", INFERENCE, ids=[c[0] for c in INFERENCE])
def test_the_task_is_inferred_from_the_target_and_printed(tmp_path, case, text, task, why):
    said = []
    data = load_dataset(
        RunConfig(name="t", data=write_text(tmp_path / "t.csv", text), target="y"), said.append
    )
    assert data.task == task
    (line,) = [s for s in said if s.startswith("inferred: task")]
    assert why in line and "override with --task" in line


def test_inferences_can_be_overridden(tmp_path):
    path = write_text(tmp_path / "t.csv", "x,y\n" + "".join(f"{i % 9},{i % 4}\n" for i in range(40)))
    assert (
        load_dataset(RunConfig(name="t", data=path, target="y", task="regression"), quiet).task
        == "regression"
    )
    said = []
    data = load_dataset(
        config(write(rows_table(100), tmp_path / "r.csv"), ignore=["id", "colour"]), said.append
    )
    assert "colour" not in [f.name for f in data.features] and not [s for s in said if "colour" in s]


def test_text_columns_are_categorical_and_a_stray_word_in_numbers_is_an_error(tmp_path):
    said = []
    data = load_dataset(config(write(rows_table(100), tmp_path / "t.csv")), said.append)
    assert [f.kind for f in data.features] == ["numeric", "numeric", "numeric", "categorical"]
    columns = [s for s in said if "column" in s]
    assert columns == [
        "inferred: column 'colour' is text, so categorical (leave it out with --ignore colour)"
    ]
    text = "a,label\n" + "1,0\n2,1\n" * 5 + "lots,1\n"
    with pytest.raises(PipelineError, match=r"column 'a' line 12: 'lots' is not a number"):
        load_dataset(config(write_text(tmp_path / "s.csv", text), ignore=[]), quiet)


def test_missing_tokens_in_any_case_and_padding(tmp_path):
    text = "a,label\n" + "".join(
        f"{v},{i % 2}\n" for i, v in enumerate(["NA", " n/a ", "None", "?", "NULL", "nan", "1", "2"] * 3)
    )
    data = load_dataset(config(write_text(tmp_path / "t.csv", text), ignore=[]), quiet)
    assert np.isnan(data.x[:, 0]).sum() == 18


def test_high_cardinality_categories_are_capped_with_a_warning(tmp_path):
    n = 300
    table = pa.table(
        {
            "code": [f"c{i % 40:02d}" if i % 3 else "common" for i in range(n)],
            "label": [i % 2 for i in range(n)],
        }
    )
    said = []
    data = load_dataset(config(write(table, tmp_path / "t.csv"), ignore=[], max_categories=5), said.append)
    (code,) = data.features
    assert len(code.labels) == 5 and "common" in code.labels
    assert any(s.startswith("warning: column 'code' has 41 categories") for s in said)
    rare = [i for i, v in enumerate(table.column("code").to_pylist()) if v not in code.labels]
    assert rare and np.isnan(data.x[rare, 0]).all()  # folded: encoded like an unseen category


def test_parquet_errors_name_the_file_and_row(tmp_path):
    table = pa.table({"a": [1.0, 2.0, float("inf"), 4.0] * 3, "label": [0, 1] * 6})
    with pytest.raises(PipelineError, match=r"column 'a' t.parquet row 3: 'inf' is not a finite number"):
        load_dataset(config(write(table, tmp_path / "t.parquet"), ignore=[]), quiet)


def test_help_says_what_every_flag_does_and_its_default():
    result = run_cli("-m", "pipeline", "train", "--help")
    assert result.returncode == 0
    for flag, default in (
        ("--data", "none"),
        ("--memory-budget", "'auto'"),
        ("--epochs", "0"),
        ("--hidden", "none"),  # from the table
    ):
        block = result.stdout.split(f"\n  {flag} ", 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default})" in " ".join(block.split()), flag


def test_your_own_table_runs_the_whole_path_in_one_command(tmp_path):
    path = write(rows_table(300), tmp_path / "animals.csv")
    result = run_cli(
        "-m",
        "export",
        "all",
        "--data",
        path,
        "--target",
        "label",
        "--epochs",
        "3",
        "--ignore",
        "id",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--repository",
        str(tmp_path / "models"),
    )
    assert result.returncode == 0, result.stderr
    assert "inferred: task binary" in result.stdout and "inferred: column 'colour' is text" in result.stdout
    manifest = json.loads((tmp_path / "models" / "animals" / "manifest.json").read_text())
    assert manifest["task"] == "binary" and [f["name"] for f in manifest["features"]] == [
        "a",
        "b",
        "c",
        "colour",
    ]
    assert all(b["status"] in ("passed", "skipped") for b in manifest["parity"]["backends"])
    progress = [line for line in result.stderr.splitlines() if line.startswith("train animals")]
    assert 1 <= len(progress) <= 12 and "\r" not in result.stderr  # a log, not a redrawn bar


def test_prepare_refuses_values_beyond_float32(tmp_path):
    table = open_table(write_text(tmp_path / "t.csv", "a,label\n1e39,0\n"))
    from pipeline.data.encoding import Columns

    chunk = next(table.chunks(["a"], ["label"]))
    with pytest.raises(PipelineError, match="beyond the float32 range"):
        prepare(chunk, Columns("label", ["a"], set()))
