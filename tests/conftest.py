"""Session fixtures: the three built-in models are trained once, compiled once, and shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import builtin_config, builtin_names
from pipeline.run import compile_run, train_run
from pipeline.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# Servers that tests start from the command line take no fixed gRPC port (8001 may be taken on a shared
# machine); the gRPC tests pass --grpc-port with a free one.
os.environ["SERVE_GRPC_PORT"] = "0"


def quiet(*args, **kwargs) -> None:
    pass


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """Every built-in model trained with its own config at seed 0 (a few seconds in all)."""
    runs = tmp_path_factory.mktemp("runs")
    for name in builtin_names():
        train_run(builtin_config(name), runs, progress=False, log=quiet)
    return runs


@pytest.fixture(scope="session")
def trained(runs_dir) -> dict:
    """name → (eager model, checkpoint payload)."""
    return {name: load_checkpoint(runs_dir / name / "checkpoint.pt") for name in builtin_names()}


@pytest.fixture(scope="session")
def compiled_reports(runs_dir) -> dict:
    """name → report after the torch.compile stage (compiles each model once per session)."""
    return {name: compile_run(runs_dir / name, log=quiet) for name in builtin_names()}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300
    )


@pytest.fixture(scope="session")
def repository(runs_dir, compiled_reports, tmp_path_factory) -> Path:
    """The three built-in models exported and verified into one model repository."""
    from export.run import export_run

    repo = tmp_path_factory.mktemp("models")
    for name in builtin_names():
        export_run(runs_dir / name, repo, log=quiet)
    return repo


@pytest.fixture(scope="session")
def compiled_models(trained, compiled_reports) -> dict:
    """name → torch.compile handle (inductor's cache is warm after `compiled_reports`)."""
    from pipeline.checks.compiled import compile_model

    return {name: compile_model(model) for name, (model, _) in trained.items()}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip CUDA-marked tests, with the reason, before their (CPU-costly) fixtures are built."""
    if item.get_closest_marker("cuda"):
        from export.verify import cuda_unavailable_reason

        reason = cuda_unavailable_reason(for_onnxruntime="onnxruntime" in item.name)
        if reason:
            pytest.skip(reason)
