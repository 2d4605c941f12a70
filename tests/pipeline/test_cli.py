"""`python -m pipeline`: a user's own CSV by flags, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import run_cli


def write_user_table(path, n=60):
    rng = np.random.default_rng(0)
    lines = ["id,size,colour,weight,label"]
    for i in range(n):
        size, colour = rng.normal(), ["red", "green", "blue"][i % 3]
        size += 0.5 if size > 0 else -0.5  # a margin around the boundary: the label is separable
        weight = "" if i % 10 == 0 else f"{rng.normal(50, 10):.2f}"  # some missing
        lines.append(f"row{i},{size:.3f},{colour},{weight},{'yes' if size > 0 else 'no'}")
    path.write_text("\n".join(lines) + "\n")


def test_user_csv_by_flags_trains_and_writes_a_run(tmp_path):
    write_user_table(tmp_path / "things.csv")
    result = run_cli(
        "-m",
        "pipeline",
        "train",
        "--csv",
        str(tmp_path / "things.csv"),
        "--target",
        "label",
        "--task",
        "binary",
        "--positive",
        "yes",
        "--categorical",
        "colour",
        "--ignore",
        "id",
        "--epochs",
        "60",
        "--hidden",
        "8,4",
        "--quiet",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert result.returncode == 0, result.stderr
    assert "hidden = [8, 4]" in result.stdout  # the resolved config is printed
    report = json.loads((tmp_path / "runs" / "things" / "report.json").read_text())
    assert [f["name"] for f in report["features"]] == ["size", "colour", "weight"]
    assert report["class_names"] == ["not yes", "yes"]
    assert report["test_metrics"]["accuracy"] == 1.0, report["test_metrics"]  # separable: no errors


def test_errors_are_one_line_with_non_zero_exit(tmp_path):
    cases = [
        (["--csv", str(tmp_path / "nope.csv"), "--target", "y", "--task", "binary"], "error: no such file"),
        (["--model", "no-such-model"], "error: no built-in model 'no-such-model'"),
        (["--model", "zoo-mammal", "--epochs", "many"], "error: --epochs: 'many' is not a valid int"),
        (["--model", "zoo-mammal", "--task", "ranking"], "error: task 'ranking' must be one of"),
    ]
    for args, message in cases:
        result = run_cli("-m", "pipeline", "train", "--quiet", "--runs-dir", str(tmp_path / "runs"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip().startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
