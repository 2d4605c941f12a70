"""Faults: exports killed at random moments, and fuzzed training tables. Nothing good is ever lost, no
partial version is ever visible, and bad tables stop with one PipelineError and no artifact.

FAULT_KILLS sets how many exports are killed (CI: 3; `make soak`: 20); FUZZ_EXAMPLES the CSV cases."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
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


def export_command(runs_dir: Path, models: Path) -> list[str]:
    return [
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
    ]


def test_exports_killed_at_random_moments_never_lose_the_published_version(repository, runs_dir, tmp_path):
    """KILLS exports killed at random moments inside an export's measured duration; at least one kill
    must land before publication (on a noisy machine a later export can be faster than the measured
    one, so the aim follows the fastest seen, and a few extra exports are allowed until one lands)."""
    models = tmp_path / "models"
    shutil.copytree(repository / "zoo-mammal", models / "zoo-mammal")
    start = time.monotonic()
    subprocess.run(export_command(runs_dir, models), cwd=ROOT, capture_output=True, check=True, timeout=300)
    duration = time.monotonic() - start  # one whole export on this machine, now
    pick = random.Random(0)
    outcomes = []
    while len(outcomes) < KILLS or "killed" not in outcomes:
        assert len(outcomes) < KILLS + 5, f"no kill landed before publication: {outcomes}"
        before = visible_tree(models)
        delay = pick.uniform(0.1, 0.8) * duration
        start = time.monotonic()
        export = subprocess.Popen(
            export_command(runs_dir, models), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            code = export.wait(timeout=delay)  # finished first
            duration = time.monotonic() - start
        except subprocess.TimeoutExpired:
            export.send_signal(signal.SIGKILL)  # still running: the kill lands inside the export
            code = export.wait()
        assert code in (0, -signal.SIGKILL), code
        after = visible_tree(models)
        changed = after != before  # killed after the atomic swap (while cleaning up) counts as published
        outcomes.append("finished" if code == 0 else "killed after publishing" if changed else "killed")
        if outcomes[-1] == "killed after publishing":
            duration = delay  # it had published by then: aim earlier
        assert sorted(after) == [
            "zoo-mammal/1/model.onnx",
            "zoo-mammal/config.pbtxt",
            "zoo-mammal/manifest.json",
        ]
        Model.load(models / "zoo-mammal")  # old or new, what is published is whole: sha256 and graph check
        repo = Repository(models).load_all(quiet)
        assert sorted(repo.models) == ["zoo-mammal"] and not repo.failed  # hidden staging is never served
    counts = {outcome: outcomes.count(outcome) for outcome in sorted(set(outcomes))}
    print(f"\nexport kills: {counts}; the published model was always whole")


# Runs `publish` with a SIGKILL at the Nth filesystem call that publication makes (renames, the
# renameat2 exchange, removals), before that call runs: no `finally`, no cleanup, as in a crash.
PUBLISH_WITH_A_CRASH = """
import json, os, shutil, signal, sys
from pathlib import Path

import contract.publish
from export.repository import publish

crash_at, repository, onnx_file, manifest, mode = sys.argv[1:]
calls = 0

def crashing(real):
    def call(*args, **kwargs):
        global calls
        calls += 1
        if calls == int(crash_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

for module, name in (
    (os, "rename"), (os, "replace"), (os, "unlink"), (os, "rmdir"), (shutil, "rmtree"),
    (contract.publish, "exchange"),
):
    setattr(module, name, crashing(getattr(module, name)))
manifest = json.loads(Path(manifest).read_text())
publish(Path(repository), "zoo-mammal", Path(onnx_file), manifest, keep_versions=mode == "keep")
print(calls)
"""


def publish_with_a_crash(crash_at: int, models: Path, onnx_file: Path, manifest: Path, keep_versions: bool):
    arguments = [str(crash_at), str(models), str(onnx_file), str(manifest), "keep" if keep_versions else ""]
    return subprocess.run(
        [sys.executable, "-c", PUBLISH_WITH_A_CRASH, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("keep_versions", [False, True], ids=["replace", "keep-versions"])
def test_publication_killed_at_every_step_shows_the_old_version_or_the_new(
    repository, tmp_path, keep_versions
):
    """A kill before each filesystem call of publication in turn (N = 1, 2, ... until one run completes):
    after every kill the visible model is the whole old version, byte-identical, or the whole new one."""
    old = tmp_path / "old"
    shutil.copytree(repository / "zoo-mammal", old / "zoo-mammal")
    before = visible_tree(old)
    proto = onnx.load(str(old / "zoo-mammal" / "1" / "model.onnx"))
    proto.doc_string = "the new version"  # same graph, different bytes and sha256
    new_onnx = tmp_path / "new.onnx"
    onnx.save(proto, str(new_onnx))
    manifest = old / "zoo-mammal" / "manifest.json"  # publish() sets version, sha256 and dates anew
    new_bytes = new_onnx.read_bytes()
    version = 2 if keep_versions else 1
    new_files = sorted({*before, f"zoo-mammal/{version}/model.onnx"})

    def visible_version(models: Path) -> str:
        tree = visible_tree(models)
        Model.load(models / "zoo-mammal")  # whole: sha256 and graph agree with the manifest
        repo = Repository(models).load_all(quiet)
        assert sorted(repo.models) == ["zoo-mammal"] and not repo.failed  # staging is never served
        if tree == before:
            return "old"
        assert sorted(tree) == new_files
        assert tree[f"zoo-mammal/{version}/model.onnx"] == new_bytes
        assert json.loads(tree["zoo-mammal/manifest.json"])["version"] == version
        if keep_versions:
            assert tree["zoo-mammal/1/model.onnx"] == before["zoo-mammal/1/model.onnx"]
        return "new"

    seen = []
    for crash_at in range(1, 100):
        models = tmp_path / f"crash-at-{crash_at}"
        shutil.copytree(old, models)
        result = publish_with_a_crash(crash_at, models, new_onnx, manifest, keep_versions)
        if result.returncode == 0:  # N is past the last call: publication ran to the end
            assert int(result.stdout) == crash_at - 1  # every call of this run was a crash point before
            assert visible_version(models) == "new"
            assert sorted(p.name for p in models.iterdir()) == ["zoo-mammal"]  # no staging left behind
            break
        assert result.returncode == -signal.SIGKILL, result.stderr
        seen.append(visible_version(models))
    else:
        pytest.fail("publication never completed")
    print(f"\npublication killed at each of {len(seen)} steps: {seen}")
    assert "old" in seen and "new" in seen  # the kills straddle the moment of publication
    crashed = tmp_path / f"crash-at-{crash_at - 1}"  # killed at the last step: its staging is left over
    assert any(p.name.startswith(".") for p in crashed.iterdir())
    result = publish_with_a_crash(0, crashed, new_onnx, manifest, keep_versions)  # 0: no crash
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in crashed.iterdir()) == ["zoo-mammal"]  # the next export cleans up


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
