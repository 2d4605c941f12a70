"""The torch.compile stage: compiled equals eager at batch sizes 1, 7 and 1024, and the checks bite."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

from pipeline.checks import compiled as compiled_module
from pipeline.checks import parity
from pipeline.checks.compiled import torch_predict
from pipeline.config import builtin_names
from pipeline.errors import PipelineError
from pipeline.run import compile_run
from pipeline.tasks import OUTPUT_DTYPES
from tests.conftest import quiet


@pytest.mark.parametrize("name", builtin_names())
def test_compiled_matches_eager(compiled_reports, name):
    report = compiled_reports[name]["compile"]
    assert report["rows_compared"] >= 1024
    for diff in report["parity"]:
        assert diff["passed"], diff
        assert diff["min_tolerance"] <= parity.ATOL  # the smallest atol = rtol every element passes at
    assert report["eager_batch1_us"] > 0 and report["compiled_batch1_us"] > 0


def test_compile_stage_rejects_a_compiled_model_that_differs(runs_dir, tmp_path, monkeypatch):
    """The stage's own check, not a flag it wrote: when torch.compile hands back a module whose outputs
    are off by 1e-3, `compile_run` fails with the numbers and records nothing."""
    run = tmp_path / "zoo-multiclass"
    shutil.copytree(runs_dir / "zoo-multiclass", run)
    report_before = (run / "report.json").read_bytes()

    def compile_wrongly(model):
        perturbed = copy.deepcopy(model)
        with torch.no_grad():
            perturbed.mlp[-1].bias += 1e-3
        return perturbed

    monkeypatch.setattr(compiled_module, "compile_model", compile_wrongly)
    with pytest.raises(PipelineError, match=r"torch.compile does not match the reference: logits: "):
        compile_run(run, log=quiet)
    assert (run / "report.json").read_bytes() == report_before


def test_parity_rows_cover_edges_held_out_and_every_batch_size(trained):
    model, payload = trained["auto-mpg"]
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())
    assert np.isnan(rows).any(axis=1).sum() >= len(model.spec.features)  # NaN in every column, at least
    assert np.nanmax(np.abs(rows)) > 1e4
    origin = [f.name for f in model.spec.features].index("origin")
    assert {4.0, -1.0} <= set(rows[:, origin].tolist())  # unseen region codes
    sizes = {size for size, _ in parity.batches(rows)}
    assert sizes == set(parity.BATCH_SIZES)


def outputs_of(model, rows):
    return parity.run_batches(torch_predict(model, model.output_names), rows)


def expected(model):
    return {n: OUTPUT_DTYPES[n] for n in model.output_names}


@pytest.mark.parametrize("name", builtin_names())
def test_comparison_catches_a_perturbed_weight(trained, name):
    model, payload = trained[name]
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.mlp[-1].bias[0] += 1e-2
    diffs = parity.compare(outputs_of(model, rows), outputs_of(perturbed, rows), expected(model))
    first = model.output_names[0]  # logits, or prediction
    assert first in [d.output for d in diffs if not d.passed]
    with pytest.raises(parity.ParityError, match=first):
        raise parity.ParityError("candidate", diffs)


def test_comparison_catches_wrong_names_dtypes_and_shapes(trained):
    model, payload = trained["zoo-multiclass"]
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())
    reference = outputs_of(model, rows)
    renamed = {("scores" if k == "logits" else k): v for k, v in reference.items()}
    assert [d.output for d in parity.compare(reference, renamed, expected(model)) if not d.passed] == [
        "logits"
    ]
    wrong_dtype = {**reference, "label": [v.astype(np.int32) for v in reference["label"]]}
    (diff,) = [d for d in parity.compare(reference, wrong_dtype, expected(model)) if not d.passed]
    assert diff.output == "label" and "dtype" in diff.problems[0]
    wrong_shape = {**reference, "probabilities": [v[:, :-1] for v in reference["probabilities"]]}
    (diff,) = [d for d in parity.compare(reference, wrong_shape, expected(model)) if not d.passed]
    assert diff.output == "probabilities" and "shape" in diff.problems[0]


def test_comparison_catches_nan_and_flipped_labels_but_reports_ties():
    reference = {
        "probabilities": [np.array([[0.2], [0.5], [0.9]], np.float32)],
        "label": [np.array([0, 1, 1])],
    }
    flipped = {"probabilities": reference["probabilities"], "label": [np.array([0, 0, 1])]}
    (_, label) = parity.compare(reference, flipped, {"probabilities": np.float32, "label": np.int64})
    assert label.passed and label.ties == 1  # 0.5 sits on the threshold: a tie, reported
    flipped["label"] = [np.array([1, 1, 1])]
    (_, label) = parity.compare(reference, flipped, {"probabilities": np.float32, "label": np.int64})
    assert not label.passed and label.mismatched_labels == 1
    nan = {"probabilities": [np.array([[0.2], [np.nan], [0.9]], np.float32)], "label": reference["label"]}
    (probabilities, _) = parity.compare(reference, nan, {"probabilities": np.float32, "label": np.int64})
    assert not probabilities.passed and "NaN/Inf" in probabilities.problems[0]


def test_probabilities_compare_by_absolute_tolerance_only():
    reference = {"probabilities": [np.array([[1e-8]], np.float32)]}
    candidate = {"probabilities": [np.array([[0.0]], np.float32)]}  # onnxruntime's Sigmoid underflow
    (diff,) = parity.compare(reference, candidate, {"probabilities": np.float32})
    assert diff.passed and diff.max_rel == pytest.approx(1.0)


def test_outputs_3e_5_apart_fail_the_cpu_tolerance_of_1e_5():
    """The contract's CPU tolerance is 1e-5 (DESIGN §5): a difference of 3e-5 on values near 1 (relative
    3e-5) fails, one of 5e-6 passes, and the report's minimum passing tolerance is the difference."""
    reference = {"prediction": [np.linspace(0.5, 1.5, 64, dtype=np.float32).reshape(-1, 1)]}
    for offset, passed in ((3e-5, False), (5e-6, True)):
        candidate = {"prediction": [reference["prediction"][0] + np.float32(offset)]}
        (diff,) = parity.compare(reference, candidate, {"prediction": np.float32})
        assert diff.passed == passed, (offset, diff.problems)
        np.testing.assert_allclose(diff.min_tolerance, offset, rtol=0.2)
