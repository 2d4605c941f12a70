"""Faults: exports killed at random moments, and fuzzed training tables. Nothing good is ever lost, no
partial version is ever visible, and bad tables stop with one PipelineError and no artifact.

FAULT_KILLS sets how many exports are killed (CI: 3; `make soak`: 20); FUZZ_EXAMPLES the CSV cases."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.run import train_run
from serve.model import Model
from serve.repository import Repository
from tests.conftest import ROOT, quiet

KILLS = int(os.environ.get("FAULT_KILLS", "3"))
CSV_EXAMPLES = min(int(os.environ.get("FUZZ_EXAMPLES", "40")), 400)


def visible_tree(directory: Path) -> dict[str, bytes]:
    """What a server or a user sees: every file not under a hidden (staging) directory."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    }


def test_exports_killed_at_random_moments_never_lose_the_published_version(repository, runs_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(repository / "zoo-mammal", models / "zoo-mammal")
    pick = random.Random(0)
    outcomes = []
    for _ in range(KILLS):
        before = visible_tree(models)
        export = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "export",
                "export",
                "--model",
                "zoo-mammal",
                "--runs-dir",
                str(runs_dir),
                "--repository",
                str(models),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(pick.uniform(0.5, 10.0))  # an export takes ~5-8 s here: some finish first
        export.send_signal(signal.SIGKILL)
        code = export.wait()
        after = visible_tree(models)
        changed = after != before  # killed after the atomic swap (while cleaning up) counts as published
        outcomes.append("finished" if code == 0 else "killed after publishing" if changed else "killed")
        assert sorted(after) == [
            "zoo-mammal/1/model.onnx",
            "zoo-mammal/config.pbtxt",
            "zoo-mammal/manifest.json",
        ]
        Model(models / "zoo-mammal").load()  # old or new, what is published is whole: sha256 and graph check
        repo = Repository(models).load_all(quiet)
        assert sorted(repo.models) == ["zoo-mammal"] and not repo.failed  # hidden staging is never served
    counts = {outcome: outcomes.count(outcome) for outcome in sorted(set(outcomes))}
    print(f"\nexport kills: {counts}; every time the published model was whole and loadable")


HEADERS = st.lists(st.sampled_from(["x", "y", "z", "", "x", "colour", "y"]), min_size=0, max_size=5)
CELLS = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "NA", "?", "1e400", "-1e308", "red", "blue", "nan", "inf", '"q,u"']),
    st.text(max_size=4),
)


@st.composite
def csv_texts(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))  # garbage
    header = draw(HEADERS)
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=30))
    text = "\n".join([",".join(header), *(",".join(row) for row in rows)])
    return text.encode()


@settings(
    max_examples=CSV_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(
    content=csv_texts(),
    task=st.sampled_from(["binary", "multiclass", "regression"]),
    categorical=st.sampled_from([[], ["colour"], ["x"]]),
)
def test_fuzzed_tables_train_or_stop_with_one_clear_error(tmp_path_factory, content, task, categorical):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "t.csv").write_bytes(content)
    runs = folder / "runs"
    config = RunConfig(
        name="fuzz",
        data=str(folder / "t.csv"),
        target="y",
        task=task,
        categorical=categorical,
        epochs=3,
        patience=2,
        hidden=[4],
    )
    try:
        train_run(config, runs, progress=False, log=quiet)
    except PipelineError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        assert not runs.exists() or not any(runs.iterdir())  # no artifact from a failed run
        return
    assert sorted(p.name for p in (runs / "fuzz").iterdir()) == ["checkpoint.pt", "curves.png", "report.json"]


@pytest.mark.parametrize("content", [b"", b"y\n", b"y,x\n1,2\n", b"\x00\x01\x02", b"y,y\n1,1\n"])
def test_degenerate_tables_via_the_command_line(tmp_path, content):
    (tmp_path / "t.csv").write_bytes(content)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "train",
            "--csv",
            str(tmp_path / "t.csv"),
            "--target",
            "y",
            "--task",
            "binary",
            "--quiet",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
