"""A run's figures come from a process of their own (`pipeline.training.figures`), drawn while the run
trains; when that process fails, the run draws them itself; a failed run leaves no such process behind."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from pipeline.config import builtin_config
from pipeline.run import train_run
from pipeline.training import figures
from pipeline.training.loop import Diverged
from tests.conftest import quiet, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG, path
    return struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height


def assert_figures(run) -> None:
    assert png_size(run / "curves.png") == (900, 360)  # 10 x 4 inches at 90 dpi
    width, height = png_size(run / "importance.png")
    assert width == 630 and height > 150  # 7 inches wide, a bar per feature


def test_the_command_line_run_draws_its_figures_in_another_process(tmp_path):
    code = (
        "import sys; from pipeline.__main__ import main; "
        f"code = main(['train', '--model', 'zoo-mammal', '--epochs', '3', '--runs-dir', {str(tmp_path)!r}, "
        "'--quiet']); print('matplotlib' in sys.modules, code)"
    )
    done = run_cli("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False 0"  # drawn, and matplotlib never loaded here
    assert_figures(tmp_path / "zoo-mammal")


def test_a_figure_process_that_fails_leaves_the_figures_to_the_run(tmp_path, monkeypatch):
    def broken():
        return subprocess.Popen(
            [sys.executable, "-c", "raise SystemExit(3)"], stdin=subprocess.PIPE, text=True
        )

    monkeypatch.setattr(figures, "start_worker", broken)
    train_run(builtin_config("zoo-mammal", {"epochs": 3}), tmp_path, progress=False, log=quiet)
    assert_figures(tmp_path / "zoo-mammal")


def test_a_failed_run_stops_its_figure_process(tmp_path, monkeypatch):
    started = []

    def recorded():
        started.append(
            figures.subprocess.Popen(
                [sys.executable, "-m", "pipeline.training.figures"], stdin=subprocess.PIPE, text=True
            )
        )
        return started[-1]

    monkeypatch.setattr(figures, "start_worker", recorded)
    with pytest.raises(Diverged):
        train_run(builtin_config("zoo-mammal", {"epochs": 3, "lr": 1e30}), tmp_path, False, quiet)
    assert len(started) == 1 and started[0].poll() is not None  # not left waiting for numbers
