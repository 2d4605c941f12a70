"""Training: useful quality on the built-in data, reproducibility, early stopping, the run's report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.config import builtin_config
from pipeline.data.load import load_dataset
from pipeline.run import train_run
from pipeline.training.calibration import apply_temperature
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.loop import evaluate
from tests.conftest import quiet

# Seed 0 only, so the bounds sit below the 5-seed means (0.95, 0.98, 3.1 mpg).
QUALITY = {"zoo-multiclass": ("accuracy", 0.90), "zoo-mammal": ("accuracy", 0.95), "auto-mpg": ("rmse", 3.5)}


@pytest.mark.parametrize("name", sorted(QUALITY))
def test_builtin_model_reaches_useful_quality(runs_dir, name):
    report = json.loads((runs_dir / name / "report.json").read_text())
    metric, bound = QUALITY[name]
    value = report["test_metrics"][metric]
    assert value >= bound if metric == "accuracy" else value <= bound, (name, metric, value)


def test_run_directory_has_checkpoint_report_and_curves(runs_dir):
    run = runs_dir / "zoo-multiclass"
    report = json.loads((run / "report.json").read_text())
    for picture in ("curves.png", "importance.png"):
        assert (run / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {f["name"] for f in report["features"]}
    assert {row["feature"] for row in report["feature_importance"]} == names
    assert {"log_loss", "calibration_error"} <= set(report["test_metrics"])
    binary = json.loads((runs_dir / "zoo-mammal" / "report.json").read_text())["test_metrics"]
    assert 0.9 <= binary["roc_auc"] <= 1 and 0.8 <= binary["pr_auc"] <= 1
    assert report["config"]["target"] == "class_type"
    matrix = report["test_metrics"]["confusion_matrix"]
    assert len(matrix) == 7 and sum(map(sum, matrix)) == report["rows"]["test"]
    assert report["test_metrics"]["class_names"][0] == "mammal"
    regression = json.loads((runs_dir / "auto-mpg" / "report.json").read_text())["test_metrics"]
    assert set(regression) == {"loss", "rmse", "mae", "r2"} and regression["r2"] > 0.7


def test_seeded_runs_are_identical(tmp_path):
    overrides = {"epochs": 15, "seed": 7}
    weights = []
    for folder in ("a", "b"):
        train_run(builtin_config("auto-mpg", overrides), tmp_path / folder, progress=False, log=quiet)
        weights.append(torch.load(tmp_path / folder / "auto-mpg" / "checkpoint.pt", weights_only=True))
    for key, value in weights[0]["state_dict"].items():
        assert torch.equal(value, weights[1]["state_dict"][key]), key


def test_early_stopping_restores_the_best_epoch(tmp_path):
    """The early-stopped run's checkpoint holds the best epoch's weights: evaluated again on the same
    validation rows, it scores exactly the best validation loss of the history, not the last epoch's."""
    config = builtin_config("zoo-mammal", {"epochs": 400, "patience": 5, "lr": 0.2})
    report = train_run(config, tmp_path, progress=False, log=quiet)
    history = report["history"]
    best = history["best_epoch"]
    assert report["epochs_run"] < 400 and report["training"]["stopped"] == "early stopping"
    assert report["epochs_run"] - best == 5
    assert min(history["val_loss"]) == history["val_loss"][best - 1] < history["val_loss"][-1]
    model, _ = load_checkpoint(tmp_path / "zoo-mammal" / "checkpoint.pt")
    if report["calibration"]["temperature"] != 1.0:  # undo the temperature folded in after training
        apply_temperature(model, 1 / report["calibration"]["temperature"])
    dataset = load_dataset(config.resolve(Path.cwd()), quiet)
    again = evaluate(model, dataset.chunks("val"), dataset.class_names)["loss"]
    assert again == pytest.approx(history["val_loss"][best - 1], rel=1e-5)


def test_a_failed_run_leaves_the_previous_run_untouched(tmp_path):
    train_run(builtin_config("zoo-mammal", {"epochs": 5}), tmp_path, progress=False, log=quiet)
    before = {p.name: p.read_bytes() for p in (tmp_path / "zoo-mammal").iterdir()}
    with pytest.raises(Exception, match="diverged"):
        train_run(
            builtin_config("zoo-mammal", {"epochs": 5, "lr": 1e30}), tmp_path, progress=False, log=quiet
        )
    after = {p.name: p.read_bytes() for p in (tmp_path / "zoo-mammal").iterdir()}
    assert before == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo-mammal"]  # no staging left behind
