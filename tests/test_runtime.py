"""The torch-free runtime: the model class, the repository loader, import hygiene (batch prediction:
test_predict.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from pipeline import parity
from pipeline.config import builtin_names
from serve.errors import BadRequest, ModelLoadError
from serve.model import Model
from serve.repository import Repository
from tests.conftest import ROOT, quiet


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
        ([{"wings": 1}], "unknown feature name(s) 'wings'"),
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
def repository_copy(repository, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(repository, copy)
    return copy


def test_tampered_model_is_refused_and_the_others_served(repository_copy):
    onnx_file = repository_copy / "zoo-mammal" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    (repository_copy / "not a model").mkdir()  # an invalid name is not a candidate
    (repository_copy / "empty").mkdir()
    repo = Repository(repository_copy).load_all(quiet)
    assert sorted(repo.models) == ["auto-mpg", "zoo-multiclass"]
    assert "does not match the sha256" in repo.failed["zoo-mammal"]
    assert repo.failed["empty"] == "missing manifest.json"
    assert not repo.ready  # strict: a refused model keeps the server not ready
    with pytest.raises(ModelLoadError, match="sha256"):
        Model.load(repository_copy / "zoo-mammal")


def test_manifest_that_disagrees_with_the_graph_is_refused(repository_copy):
    path = repository_copy / "auto-mpg" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["outputs"][0]["name"] = "mpg"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="graph outputs"):
        Model.load(repository_copy / "auto-mpg")


def test_empty_repository_is_never_ready(tmp_path):
    repo = Repository(tmp_path).load_all(quiet)
    assert not repo.models and not repo.ready


SERVE_WITHOUT_TORCH = """
import json, socket, sys, threading, time, urllib.request
import grpc, numpy as np
from serve.config import ServerConfig
from serve.grpc.messages import SERVICE, ModelInferRequest, ModelInferResponse
from serve.predict import predict_table  # batch prediction stays torch-free too
from serve.server import Server
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    grpc_port = s.getsockname()[1]
server = Server(ServerConfig(repository=sys.argv[1], port=0, grpc_port=grpc_port), log=lambda line: None)
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
while not server.started or server.dataplane.repository.loading:
    time.sleep(0.01)
port = server.http.servers[0].sockets[0].getsockname()[1]
body = json.dumps({"instances": [{"legs": 4}]}).encode()
answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/zoo-mammal:predict", body).read()
request = ModelInferRequest(model_name="zoo-mammal")
request.inputs.add(name="features", datatype="FP32", shape=[1, 16])
request.raw_input_contents.append(np.zeros(16, np.float32).tobytes())
with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
    infer = channel.unary_unary(f"/{SERVICE}/ModelInfer", ModelInferRequest.SerializeToString,
                                ModelInferResponse.FromString)
    label = np.frombuffer(infer(request, timeout=10).raw_output_contents[2], "<i8").tolist()
training_side = ("torch", "onnx", "onnxscript", "pipeline", "export", "tritonclient")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in training_side)
print(json.dumps({"answer": json.loads(answer), "label": label, "leaked": leaked}), flush=True)
server.exit()
thread.join(10)  # shut down cleanly: a daemon thread inside onnxruntime at interpreter exit can crash it
"""


def test_serving_imports_no_torch(repository):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(repository)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    assert report["answer"]["predictions"][0]["label"] in ("mammal", "other")
    assert report["label"] in ([0], [1])  # answered over gRPC too
