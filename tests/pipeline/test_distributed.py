"""Training on several processes for real: torchrun workers on gloo over 127.0.0.1, two launchers meeting
at a c10d rendezvous as two machines would, workers killed with SIGKILL, and the batch arithmetic that
makes N processes step on exactly the global batches of one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import builtin_config
from pipeline.run import train_run
from pipeline.training.batches import MemoryBatches, StreamBatches
from tests.conftest import ROOT, quiet
from tests.pipeline.training.test_loop import QUALITY
from tests.serving import free_port

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SHORT = ["--model", "auto-mpg", "--epochs", "3", "--quiet"]


def pipeline(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout)


def weights(runs: Path, name: str = "auto-mpg") -> dict[str, torch.Tensor]:
    return torch.load(runs / name / "checkpoint.pt", weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=atol, rtol=0, err_msg=key)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """auto-mpg, 3 epochs, on 2 processes with 32 rows per process and step."""
    runs = tmp_path_factory.mktemp("nproc2")
    result = pipeline(*SHORT, "--batch-size", "32", "--nproc", "2", "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    return runs


def test_two_processes_give_the_weights_of_one_with_the_same_global_batches(two_processes, tmp_path):
    train_run(builtin_config("auto-mpg", {"epochs": 3, "batch_size": 64}), tmp_path, False, quiet)
    assert_same_weights(weights(tmp_path), weights(two_processes), atol=1e-5)
    report = json.loads((two_processes / "auto-mpg" / "report.json").read_text())
    assert report["rows"] == {"train": 238, "val": 80, "test": 80}  # the whole table, not one shard
    assert not (two_processes / ".auto-mpg.resume").exists()  # removed once the run is published


def test_two_launchers_meeting_at_a_c10d_rendezvous_match_nproc_2(two_processes, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "two-machines",
                "-m",
                "pipeline",
                "train",
                *SHORT,
                "--batch-size",
                "32",
                "--runs-dir",
                str(tmp_path),
            ],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs
    assert_same_weights(weights(tmp_path), weights(two_processes), atol=1e-6)


def workers_of(launcher: subprocess.Popen) -> list[int]:
    """PIDs of the training workers below a launcher (its children running the pipeline)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == launcher.pid and b"pipeline" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def kill_a_worker_after_epoch(launcher: subprocess.Popen, state: Path, epoch: int) -> None:
    """SIGKILL one worker once the resumable state says `epoch` epochs are complete (so mid-epoch)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if state.is_file():
            try:
                done = torch.load(state, weights_only=True)["epoch"]
            except Exception:  # caught while being replaced; the next look sees it whole
                done = 0
            if done >= epoch:
                workers = workers_of(launcher)
                assert len(workers) == 2, workers
                os.kill(workers[-1], signal.SIGKILL)
                return
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.02)
    raise AssertionError("training never reached the epoch to kill at")


# Not --quiet: it would hide the line "resuming ... after epoch N" these tests read.
LONG = ["--model", "auto-mpg", "--epochs", "40", "--patience", "100", "--batch-size", "32"]


def test_a_killed_worker_is_restarted_and_the_job_resumes_to_the_same_weights(tmp_path):
    uninterrupted = pipeline(*LONG, "--nproc", "2", "--runs-dir", str(tmp_path / "a"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    runs = tmp_path / "b"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "train", *LONG, "--nproc", "2", "--max-restarts", "1",
         "--runs-dir", str(runs)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    kill_a_worker_after_epoch(launcher, runs / ".auto-mpg.resume" / "state.pt", epoch=5)
    output = launcher.communicate(timeout=300)[0]
    assert launcher.returncode == 0, output
    resumed = [line for line in output.splitlines() if line.startswith("resuming auto-mpg after epoch")]
    assert resumed and int(resumed[0].split("epoch ")[1].split()[0]) >= 5
    assert_same_weights(weights(runs), weights(tmp_path / "a"), atol=0)  # bit for bit on CPU
    history = json.loads((runs / "auto-mpg" / "report.json").read_text())["history"]
    assert len(history["train_loss"]) == 40


def test_without_restarts_a_killed_worker_fails_fast_naming_its_rank(tmp_path):
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "train", *LONG, "--nproc", "2", "--runs-dir", str(tmp_path)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    kill_a_worker_after_epoch(launcher, tmp_path / ".auto-mpg.resume" / "state.pt", epoch=2)
    killed = time.monotonic()
    _, stderr = launcher.communicate(timeout=120)
    assert time.monotonic() - killed < 60
    assert launcher.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1 (pid ") and "failed with signal SIGKILL" in last, stderr
    assert not (tmp_path / "auto-mpg").exists()  # nothing published


def test_an_unreachable_rendezvous_is_an_error_not_a_hang(tmp_path):
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-conf",
            "join_timeout=5", "-m", "pipeline", "train", *SHORT, "--runs-dir", str(tmp_path),
        ],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and time.monotonic() - start < 90
    assert "RendezvousTimeoutError" in result.stderr or "rendezvous" in result.stderr.lower()
    assert not (tmp_path / "auto-mpg").exists()


def test_builtin_models_on_two_processes_reach_the_same_quality(tmp_path):
    result = pipeline("--quiet", "--nproc", "2", "--runs-dir", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr
    for name, (metric, bound) in QUALITY.items():
        value = json.loads((tmp_path / name / "report.json").read_text())["test_metrics"][metric]
        assert value >= bound if metric == "accuracy" else value <= bound, (name, metric, value)


def encode_plain(x, y):
    return torch.from_numpy(x), torch.from_numpy(y)


def test_memory_batches_of_every_rank_add_up_to_the_single_process_batches():
    n, batch, world = 103, 8, 3
    x = np.arange(n, dtype=np.float32).reshape(-1, 1)
    y = np.arange(n)
    single = [
        b[1].tolist()
        for b in MemoryBatches(x, y, y, encode_plain, batch, torch.Generator().manual_seed(5)).epoch(1)
    ]
    bounds = [0, 30, 31, 103]  # uneven shards, one of a single row
    per_rank = []
    for rank in range(world):
        rows = np.arange(bounds[rank], bounds[rank + 1])
        steps = MemoryBatches(x, y, rows, encode_plain, batch, torch.Generator().manual_seed(5), rows[0], n)
        per_rank.append(list(steps.epoch(1)))
    assert {len(steps) for steps in per_rank} == {len(single)}  # every rank takes every step
    for k, expected in enumerate(single):
        got = sorted(v for steps in per_rank for v in steps[k][1].tolist())
        assert got == sorted(expected)
        assert {steps[k][2] for steps in per_rank} == {len(expected)}


def test_stream_batches_take_whole_steps_across_buffers_and_pad_short_shards():
    chunks = [
        (np.arange(a, b, dtype=np.float32).reshape(-1, 1), np.arange(a, b))
        for a, b in ((0, 7), (7, 9), (9, 30))
    ]
    empty = (np.empty((0, 1), np.float32), np.empty(0, np.int64))
    stream = StreamBatches(lambda: chunks, encode_plain, 4, 0, 5, empty, shards=[30, 45], rank=0)
    steps = list(stream.epoch(1))
    assert [len(s[0]) for s in steps] == [4] * 7 + [2] + [0, 0, 0, 0]  # 12 steps: the longer shard's
    assert sorted(v for s in steps for v in s[1].tolist()) == list(range(30))
    assert [s[2] for s in steps] == [8] * 7 + [6, 4, 4, 4, 1]


@pytest.mark.cuda
def test_nccl_on_two_gpus_gives_the_weights_of_gloo(two_processes, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL needs one GPU per process: fewer than 2 CUDA devices visible")
    result = pipeline(
        *SHORT, "--batch-size", "32", "--nproc", "2", "--backend", "nccl", "--runs-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "on 2 processes (nccl)" in result.stdout  # the work ran on the GPUs' backend
    assert_same_weights(weights(tmp_path), weights(two_processes), atol=1e-4)
