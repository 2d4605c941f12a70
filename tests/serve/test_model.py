"""The runtime model (serve/model.py): built complete by `Model.load` from a verified model directory,
it answers as the torch model does and encodes named rows by the manifest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from pipeline.checks import parity
from pipeline.config import builtin_names
from serve.errors import BadRequest, ModelLoadError
from serve.model import Model


@pytest.mark.parametrize("name", builtin_names())
def test_predict_equals_the_torch_reference(repository, trained, name):
    model, payload = trained[name]
    runtime = Model.load(repository / name)
    assert runtime.version == "1" and runtime.name == name
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())[:300]
    outputs = runtime.predict(rows)
    with torch.inference_mode():
        expected = dict(zip(model.output_names, (t.numpy() for t in model(torch.from_numpy(rows)))))
    assert list(outputs) == list(model.output_names)
    for key, value in expected.items():
        assert_allclose(outputs[key], value, rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", ["zoo-mammal", "zoo-multiclass"])
def test_served_probabilities_are_the_activation_of_the_served_logits(repository, trained, name):
    """Computed here in float64 numpy, not by any head of the project: softmax for multiclass, the
    sigmoid for binary; the label is the argmax, or p >= threshold."""
    model, payload = trained[name]
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())[:300]
    outputs = Model.load(repository / name).predict(rows)
    z = outputs["logits"].astype(np.float64)
    if z.shape[1] == 1:
        p = 0.5 * (1.0 + np.tanh(z / 2.0))  # the sigmoid, without overflow at the ±1e4-σ edge rows
        label = (p[:, 0] >= model.spec.threshold).astype(np.int64)
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        label = z.argmax(axis=1)
    assert_allclose(outputs["probabilities"], p, rtol=1e-5, atol=1e-6)
    assert np.array_equal(outputs["label"], label)


def test_named_features_use_the_manifests_order_and_category_codes(repository):
    runtime = Model.load(repository / "auto-mpg")
    names = [f["name"] for f in runtime.features]
    row = {
        "cylinders": 4,
        "displacement": 97.0,
        "horsepower": None,
        "weight": "2130",
        "acceleration": 14.5,
        "model_year": 70,
        "origin": "3",
    }
    by_name = runtime.encode_rows([row])
    assert by_name.dtype == np.float32 and by_name.shape == (1, len(names))
    assert np.isnan(by_name[0, names.index("horsepower")]) and by_name[0, names.index("origin")] == 3.0
    by_order = runtime.encode_rows([[row[n] for n in names]])
    assert np.array_equal(by_name, by_order, equal_nan=True)
    (result,) = runtime.describe(runtime.predict(by_name))
    assert list(result) == ["mpg"] and 15 < result["mpg"] < 45


def test_describe_gives_class_names_and_probabilities(repository):
    runtime = Model.load(repository / "zoo-mammal")
    rows = [
        {"hair": 1, "milk": 1, "legs": 4, "toothed": 1, "backbone": 1, "breathes": 1},
        {"feathers": 1, "eggs": 1, "legs": 2, "airborne": 1, "backbone": 1, "breathes": 1},
    ]
    results = runtime.describe(runtime.predict(runtime.encode_rows(rows)))
    assert [r["label"] for r in results] == ["mammal", "other"]
    for r in results:
        assert list(r["probabilities"]) == ["other", "mammal"]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"wings": 1}], "row 0: every feature is missing (ignored, not features: 'wings')"),
        ([{}], "row 0: every feature is missing; model 'zoo-mammal' takes hair, feathers"),
        ([{"hair": None, "legs": " NA "}], "row 0: every feature is missing; model 'zoo-mammal'"),
        ([{"legs": "x" * 5000}], "feature 'legs': a text of 5000 characters (at most 4096)"),
        ([[1, 2]], "2 values, model 'zoo-mammal' takes 16"),
        ([{"legs": "many"}], "feature 'legs': 'many' is not a number"),
        ([{"legs": float("inf")}], "feature 'legs' is infinite or beyond the FP32 range"),
        ([{"legs": 1e39}], "feature 'legs' is infinite or beyond the FP32 range"),
        (["hair"], "expected an object of named features or a list of values"),
    ],
)
def test_bad_rows_are_refused_with_the_reason(repository, rows, message):
    runtime = Model.load(repository / "zoo-mammal")
    with pytest.raises(BadRequest) as error:
        runtime.encode_rows(rows)
    assert message in error.value.message


def test_infinite_and_wrongly_shaped_features_are_refused(repository):
    runtime = Model.load(repository / "zoo-mammal")
    with pytest.raises(BadRequest, match="Infinity"):
        runtime.predict(np.full((1, 16), np.inf, np.float32))
    with pytest.raises(BadRequest, match=r"shape \[rows, 16\]"):
        runtime.predict(np.zeros((1, 15), np.float32))
    assert runtime.predict(np.full((1, 16), np.nan, np.float32))["label"].shape == (1,)  # NaN = missing


@pytest.fixture
def model_copy(repository, tmp_path):
    """A copy of zoo-mammal's model directory, to break."""
    return shutil.copytree(repository / "zoo-mammal", tmp_path / "zoo-mammal")


def test_a_tampered_model_file_is_refused(model_copy):
    onnx_file = model_copy / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelLoadError) as error:
        Model.load(model_copy)
    assert str(error.value) == (
        "1/model.onnx does not match the sha256 in manifest.json (changed or corrupted on disk)"
    )


def test_manifest_that_disagrees_with_the_graph_is_refused(model_copy):
    path = model_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["outputs"][0]["name"] = "scores"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="graph outputs"):
        Model.load(model_copy)


def test_a_version_without_a_recorded_sha256_is_refused(model_copy):
    shutil.copytree(model_copy / "1", model_copy / "2")  # manifest.json records version 1 only
    with pytest.raises(ModelLoadError) as error:
        Model.load(model_copy, version=2)
    assert str(error.value) == "manifest.json records no sha256 for version 2"
    assert Model.load(model_copy, version=1).version == "1"
