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
from pipeline.distributed import SINGLE
from pipeline.run import train_run
from pipeline.training.batches import MemoryBatches, StreamBatches
from pipeline.training.resume import Resume
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


# -- stopping a job, and what a restart may resume (issue 18) ------------------------------------------
ENDLESS = ["--model", "auto-mpg", "--epochs", "100000", "--patience", "100000", "--quiet"]


def start_launcher(runs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "train", *ENDLESS, "--nproc", "2", "--runs-dir", str(runs)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_training(launcher: subprocess.Popen, runs: Path) -> list[int]:
    """The workers' PIDs once they have completed an epoch."""
    state = runs / ".auto-mpg.resume" / "state.pt"
    deadline = time.monotonic() + 240
    while not state.is_file():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.05)
    workers = workers_of(launcher)
    assert len(workers) == 2, workers
    return workers


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigint_to_the_launcher_stops_the_workers_with_one_line_and_exit_130(tmp_path):
    launcher = start_launcher(tmp_path)
    workers = wait_for_training(launcher, tmp_path)
    launcher.send_signal(signal.SIGINT)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 130
    assert stderr.strip().splitlines() == ["interrupted: the workers were stopped; nothing was published"]
    assert all(gone(pid) for pid in workers) and not (tmp_path / "auto-mpg").exists()


def test_workers_die_with_a_sigkilled_launcher_and_publish_nothing(tmp_path):
    """A launcher killed with SIGKILL cannot stop its workers; they must not train on unwatched and
    publish a run after the job was stopped (each asked the kernel for SIGTERM when its launcher dies)."""
    launcher = start_launcher(tmp_path)
    workers = wait_for_training(launcher, tmp_path)
    launcher.kill()
    launcher.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "the workers outlived their launcher"
        time.sleep(0.05)
    assert not (tmp_path / "auto-mpg").exists()


def change_in_place(path: Path, new_content: bytes) -> None:
    """Replace a file's content keeping its size and modification time, as `cp -p` or a careful edit
    can: only the content says it changed."""
    before = path.stat()
    assert len(new_content) == before.st_size
    path.write_bytes(new_content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_resume_state_is_not_reused_for_a_table_whose_content_changed(tmp_path, monkeypatch, kind):
    """A killed job's state, then the labels changed in place: the same command after a restart must
    start afresh, not resume weights trained on other labels."""
    import pyarrow as pa
    import pyarrow.csv  # pa.csv
    import pyarrow.parquet as pq

    table = tmp_path / f"cars.{kind}"
    cars = builtin_config("auto-mpg").data
    if kind == "csv":
        table.write_bytes(Path(cars).read_bytes())
    else:
        pq.write_table(pa.csv.read_csv(cars), table, compression="none", use_dictionary=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")

    def resume() -> Resume:
        return Resume.for_run(tmp_path / "runs", "cars", {"target": "mpg"}, 2, [table])

    resume().save(SINGLE, {"epoch": 9})
    assert resume().load(SINGLE)["epoch"] == 9  # the same table: resumed
    if kind == "csv":
        text = table.read_bytes()
        change_in_place(table, text.replace(b"\n18.0,", b"\n81.0,").replace(b"\n15.0,", b"\n51.0,"))
    else:
        data = pq.read_table(table)
        mpg = data.column("mpg").to_numpy()[::-1].copy()  # the same values, other rows: same statistics
        changed = tmp_path / "changed.parquet"
        column = data.schema.get_field_index("mpg")
        changes = data.set_column(column, "mpg", pa.array(mpg))
        pq.write_table(changes, changed, compression="none", use_dictionary=False)  # plain: the same size
        change_in_place(table, changed.read_bytes())
    assert resume().load(SINGLE) is None


def test_two_processes_merge_metrics_and_missing_counts_as_one_process_has_them(two_processes, tmp_path):
    """The run of the two-process fixture against one process on the same global batches: the same test
    metrics (each process evaluates its own rows; the metric objects must be merged, not rank 0's kept)
    and the same feature statistics (the 6 missing horsepower values are spread over both shards)."""
    single = train_run(builtin_config("auto-mpg", {"epochs": 3, "batch_size": 64}), tmp_path, False, quiet)
    double = json.loads((two_processes / "auto-mpg" / "report.json").read_text())
    for metric, value in single["test_metrics"].items():
        np.testing.assert_allclose(double["test_metrics"][metric], value, rtol=1e-4, err_msg=metric)
    features = [torch.load(runs / "auto-mpg" / "checkpoint.pt", weights_only=True)["spec"]["features"]
                for runs in (tmp_path, two_processes)]  # fmt: skip
    assert [f["missing"] for f in features[1]] == [f["missing"] for f in features[0]]
    assert sum(f["missing"] for f in features[0]) > 0
    for one, two in zip(*features):
        np.testing.assert_allclose([two["mean"], two["std"]], [one["mean"], one["std"]], rtol=1e-6)


def test_a_streamed_csv_splits_its_rows_on_two_processes_as_on_one(tmp_path):
    """A row's split is a hash of its position in the table: rank 1 must number its byte range's rows
    from where rank 0's end, or the split depends on the number of processes."""
    from tests.pipeline.data.test_tables import config, rows_table, write

    path = write(rows_table(3000), tmp_path / "t.csv")
    one = train_run(config(path, memory_budget="20KB", epochs=1), tmp_path / "one", False, quiet)
    result = pipeline("--data", path, "--target", "label", "--ignore", "id", "--memory-budget", "20KB",
                      "--epochs", "1", "--hidden", "8", "--name", "t", "--quiet", "--nproc", "2",
                      "--runs-dir", str(tmp_path / "two"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    two = json.loads((tmp_path / "two" / "t" / "report.json").read_text())
    assert one["streamed"] and two["streamed"]
    assert two["rows"] == one["rows"]


def test_a_parquet_file_of_one_row_group_trains_on_two_processes(tmp_path):
    """The whole file is rank 0's shard; rank 1 holds no rows of any split and must still take part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    table = pa.table({**{f"x{j}": x[:, j] for j in range(4)}, "label": (x[:, 0] > 0).astype(np.int64)})
    pq.write_table(table, tmp_path / "t.parquet")
    result = pipeline("--data", str(tmp_path / "t.parquet"), "--target", "label", "--epochs", "1",
                      "--hidden", "8", "--name", "t", "--quiet", "--nproc", "2",
                      "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "t" / "report.json").read_text())
    assert report["rows"]["train"] + report["rows"]["val"] + report["rows"]["test"] == 2000


def test_a_resumed_job_restores_torchs_random_state(tmp_path, monkeypatch):
    """With dropout, the masks come from torch's global random stream: a job stopped after epoch 3 and
    resumed must draw epoch 4's masks as the uninterrupted job did, to reach its weights bit for bit."""
    config = builtin_config("auto-mpg", {"epochs": 6, "patience": 100, "dropout": 0.3})
    train_run(config, tmp_path / "whole", False, quiet)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")  # as under torchrun: a state every epoch
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    save = Resume.save

    def killed_after_epoch_3(self, job, state):
        save(self, job, state)
        if state["epoch"] == 3:
            raise KeyboardInterrupt  # as a worker killed there: the state stays

    monkeypatch.setattr(Resume, "save", killed_after_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "resumed", False, quiet)
    monkeypatch.setattr(Resume, "save", save)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    said = []
    train_run(config, tmp_path / "resumed", False, said.append)
    assert "resuming auto-mpg after epoch 3 (torchrun restarted the job)" in said
    assert_same_weights(weights(tmp_path / "resumed"), weights(tmp_path / "whole"), atol=0)
