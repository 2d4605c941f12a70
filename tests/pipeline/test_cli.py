"""`python -m pipeline`: a user's own CSV by flags, and one-line errors with a non-zero exit."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli
from tests.permissions import small_filesystem, unprivileged


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


# -- the disk (issue 18) -----------------------------------------------------------------------------------
ENDLESS = ["--model", "auto-mpg", "--epochs", "100000", "--patience", "100000", "--quiet"]


def one_line_exit_2(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, lines
    return lines[0]


@pytest.mark.parametrize("how", ["permissions", "read-only-mount"])
@pytest.mark.parametrize("nproc", ["1", "2"])
def test_a_runs_directory_that_cannot_be_written_is_refused_before_training(tmp_path, how, nproc):
    """A training of 100,000 epochs: refused within the test's timeout, so before it, not after."""
    runs = tmp_path / "runs"
    if how == "read-only-mount":
        context, reason = small_filesystem(runs, "1m", read_only=True), "Read-only file system"
    else:
        runs.mkdir()
        runs.chmod(0o555)
        context, reason = contextlib.nullcontext(), "Permission denied"
    with context:
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "train", *ENDLESS, "--nproc", nproc, "--runs-dir", str(runs)],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=unprivileged(), timeout=120,
        )  # fmt: skip
        assert one_line_exit_2(result) == f"error: cannot write the runs directory {runs}: {reason}"


def test_a_full_disk_during_training_is_one_line_and_publishes_nothing(tmp_path):
    runs = tmp_path / "runs"
    with small_filesystem(runs, "20k"):  # room for the checks and a checkpoint, not for the whole run
        result = run_cli("-m", "pipeline", "train", "--model", "auto-mpg", "--quiet", "--runs-dir", str(runs))
        line = one_line_exit_2(result)
        assert line.startswith("error: No space left on device: ") and str(runs) in line
        assert os.listdir(runs) == []  # no run, no staging left behind


def test_quiet_prints_only_warnings_and_the_final_line(tmp_path):
    write_user_table(tmp_path / "things.csv", n=40)  # 40 rows: a warning about the small held-out splits
    runs = tmp_path / "runs"
    args = ["-m", "pipeline", "train", "--data", str(tmp_path / "things.csv"), "--target", "label"]
    result = run_cli(*args, "--epochs", "3", "--quiet", "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("warning: too few held-out rows") and len(lines) == 2, lines
    assert lines[-1].startswith("things: test accuracy") and lines[-1].endswith(str(runs / "things"))
    assert result.stderr == ""  # no progress either


def test_make_passes_paths_with_spaces_and_globs_as_one_argument(tmp_path):
    """The make targets hand DATA, OUT, RUNS and the rest to the command as single words (a stand-in
    python records the arguments it gets)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "argv.json"
    python = venv / "bin" / "python"
    python.write_text(
        f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    python.chmod(0o755)
    (venv / ".installed").touch()  # `install` is done
    data = tmp_path / "my data"
    data.mkdir()
    for name in ("a.csv", "b.csv"):  # a glob that the shell would expand into two arguments
        (data / name).write_text("x,label\n1,0\n")
    cases = {
        "train": [f"DATA={data}/*.csv", "TARGET=the label", "RUNS=my runs"],
        "all": [f"DATA={data}/a.csv", "TARGET=label", "ARGS=--epochs 3", "REPOSITORY=my models"],
        "predict": ["MODEL=m", f"DATA={data}/a.csv", "OUT=out put's.csv", "REPOSITORY=my models"],
    }
    for target, variables in cases.items():
        record.unlink(missing_ok=True)
        result = subprocess.run(
            ["make", "-s", "-C", str(ROOT), target, f"VENV={venv}", *variables],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        argv = json.loads(record.read_text())
        value = {v.split("=", 1)[0]: v.split("=", 1)[1] for v in variables}
        if target != "predict":
            assert argv[argv.index("--data") + 1] == value["DATA"], argv
            assert argv[argv.index("--target") + 1] == value["TARGET"], argv
        if target == "train":
            assert argv[argv.index("--runs-dir") + 1] == "my runs"
        if target == "all":
            assert argv[-2:] == ["--epochs", "3"] and argv[argv.index("--repository") + 1] == "my models"
        if target == "predict":
            assert argv[argv.index("--model") + 1] == "my models/m"
            assert argv[argv.index("--data") + 1] == value["DATA"]
            assert argv[argv.index("--out") + 1] == "out put's.csv"
