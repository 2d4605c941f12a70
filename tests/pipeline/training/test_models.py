"""The deployable module: in-graph preprocessing, heads, checkpoints."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from contract.features import Feature
from pipeline.config import builtin_config
from pipeline.data.load import load_dataset
from pipeline.errors import PipelineError
from pipeline.training.checkpoint import load_checkpoint, save_checkpoint
from pipeline.training.models import ModelSpec, Preprocess, TabularModel

FEATURES = [
    Feature(name="a", kind="numeric", mean=10.0, std=2.0),
    Feature(name="region", kind="categorical", categories=[1.0, 2.0, 3.0], labels=["1", "2", "3"]),
    Feature(name="b", kind="numeric", mean=-1.0, std=0.5),
]


def test_preprocess_standardizes_imputes_and_one_hot_encodes():
    x = torch.tensor(
        [
            [12.0, 2.0, -1.5],  # plain row
            [math.nan, 3.0, math.nan],  # missing numerics → the training mean → 0 after scaling
            [10.0, 7.0, -1.0],  # unseen category code → all zeros
            [10.0, math.nan, -1.0],  # missing category → all zeros
        ]
    )
    encoded = Preprocess(FEATURES)(x).numpy()
    # columns: a, b (standardized), then region == 1, 2, 3
    assert_allclose(
        encoded,
        [
            [1.0, -1.0, 0, 1, 0],
            [0.0, 0.0, 0, 0, 1],
            [0.0, 0.0, 0, 0, 0],
            [0.0, 0.0, 0, 0, 0],
        ],
    )


@pytest.mark.parametrize(
    "task,n_out,names",
    [
        ("binary", 1, ("logits", "probabilities", "label")),
        ("multiclass", 4, ("logits", "probabilities", "label")),
        ("regression", 1, ("prediction",)),
    ],
)
def test_heads_follow_the_task_table(task, n_out, names):
    spec = ModelSpec(
        task=task,
        features=FEATURES,
        hidden=[8],
        activation="relu",
        dropout=0.0,
        n_outputs=n_out,
        threshold=0.5,
        target_mean=[20.0] if task == "regression" else [],
        target_std=[5.0] if task == "regression" else [],
    )
    torch.manual_seed(0)
    model = TabularModel(spec).eval()
    x = torch.tensor([[12.0, 2.0, -1.5], [9.0, 1.0, -2.0], [8.0, 3.0, 0.0]])
    with torch.no_grad():
        outputs = model(x)
        logits = model.mlp(model.preprocess(x))
    assert model.output_names == names and len(outputs) == len(names)
    z = logits.numpy().astype(np.float64)  # the expected heads, computed independently in float64
    if task == "binary":
        _, p, label = outputs
        sigmoid = 1.0 / (1.0 + np.exp(-z))
        assert_allclose(p.numpy(), sigmoid, rtol=1e-6, atol=1e-7)
        assert label.dtype == torch.int64 and label.tolist() == (sigmoid[:, 0] >= 0.5).tolist()
    elif task == "multiclass":
        _, p, label = outputs
        e = np.exp(z - z.max(axis=1, keepdims=True))
        assert_allclose(p.numpy(), e / e.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-7)
        assert label.dtype == torch.int64 and label.tolist() == z.argmax(1).tolist()
    else:
        assert_allclose(outputs[0].numpy(), z * 5.0 + 20.0, rtol=1e-6)


def test_binary_label_is_positive_at_exactly_the_threshold():
    """The decision rule: label 1 when p >= threshold. A zero logit is p = 0.5 exactly."""
    spec = ModelSpec(
        task="binary",
        features=FEATURES,
        hidden=[8],
        activation="relu",
        dropout=0.0,
        n_outputs=1,
        threshold=0.5,
    )
    model = TabularModel(spec).eval()
    with torch.no_grad():
        model.mlp[-1].weight.zero_()
        model.mlp[-1].bias.zero_()
        _, p, label = model(torch.tensor([[12.0, 2.0, -1.5], [math.nan, math.nan, math.nan]]))
    assert p[:, 0].tolist() == [0.5, 0.5] and label.tolist() == [1, 1]


def test_checkpoint_round_trip_gives_identical_outputs(trained, tmp_path):
    model, payload = trained["auto-mpg"]
    path = tmp_path / "copy.pt"
    save_checkpoint(path, model, config=payload["config"], held_out=payload["held_out"])
    again, _ = load_checkpoint(path)
    x = payload["held_out"]
    for a, b in zip(model(x), again(x)):
        assert torch.equal(a, b)


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "spec": io.StringIO("not a tensor")}, path)
    with pytest.raises(PipelineError, match="not a loadable checkpoint"):
        load_checkpoint(path)


def test_compiled_wrapper_is_never_saved(compiled_models, tmp_path):
    compiled = compiled_models["zoo-mammal"]  # the real torch.compile handle
    assert any(key.startswith("_orig_mod.") for key in compiled.state_dict())
    with pytest.raises(ValueError, match="eager module"):
        save_checkpoint(tmp_path / "x.pt", compiled)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_held_out_rows_are_in_the_checkpoint(trained):
    """The checkpoint keeps the test split's raw rows (the parity checks' real inputs): equal to the
    split that training held out, and rows of the CSV as read independently here."""
    _, payload = trained["zoo-multiclass"]
    held_out = payload["held_out"].numpy()
    config = builtin_config("zoo-multiclass")
    dataset = load_dataset(config, log=lambda *args: None)
    test_rows = dataset.x[dataset.splits["test"]]
    assert held_out.dtype == np.float32 and held_out.shape == (21, 16)
    assert np.array_equal(held_out, test_rows, equal_nan=True)
    names = [f["name"] for f in payload["spec"]["features"]]
    with open(config.data, newline="") as f:
        csv_rows = {tuple(float(r[n]) for n in names) for r in csv.DictReader(f)}
    assert {tuple(map(float, row)) for row in held_out} <= csv_rows
