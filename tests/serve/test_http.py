"""The HTTP server, for real on 127.0.0.1: tritonclient against it, V1, every error status, batching,
readiness and metrics."""

from __future__ import annotations

import json
import shutil
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import tritonclient.http as triton
from numpy.testing import assert_allclose
from tritonclient.utils import InferenceServerException

from pipeline.checks import parity
from serve.batching import BatchingConfig
from serve.config import ServerConfig
from serve.model import Model
from serve.server import Server
from tests.conftest import quiet
from tests.serving import json_request, request, running

MAX_BODY = 256 * 1024  # small, so the 413 case is cheap


@pytest.fixture(scope="module")
def server(repository):
    config = ServerConfig(
        repository=repository,
        max_body_bytes=MAX_BODY,
        max_rows=2048,
        batching=BatchingConfig(max_delay_us=3000),
    )
    server = Server(config, log=quiet)
    with running(server) as address:
        yield address, server


@pytest.fixture
def client(server):
    return triton.InferenceServerClient(server[0], network_timeout=30)


def rows_of(trained, name, n=50):
    model, payload = trained[name]
    return model, parity.parity_rows(model.spec.features, payload["held_out"].numpy())[:n]


def test_health_and_metadata_through_tritonclient(client, repository):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("auto-mpg") and client.is_model_ready("auto-mpg", "1")
    assert not client.is_model_ready("auto-mpg", "2") and not client.is_model_ready("nope")
    assert client.get_server_metadata()["extensions"] == [
        "binary_tensor_data",
        "model_repository",
        "model_configuration",
        "statistics",
    ]
    metadata = client.get_model_metadata("zoo-multiclass")
    manifest = json.loads((repository / "zoo-multiclass" / "manifest.json").read_text())
    assert metadata == {
        "name": "zoo-multiclass",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": manifest["inputs"],
        "outputs": manifest["outputs"],
        "parameters": {"schema": Model.load(repository / "zoo-multiclass").schema_json},
    }
    assert client.get_model_metadata("zoo-multiclass", "1") == metadata


@pytest.mark.parametrize("name", ["zoo-multiclass", "zoo-mammal", "auto-mpg"])
@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (False, False), (True, False), (False, True)])
def test_infer_equals_runtime_and_torch(client, repository, trained, name, binary_in, binary_out):
    model, rows = rows_of(trained, name)
    features = triton.InferInput("features", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows, binary_data=binary_in)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary_out) for n in model.output_names]
    result = client.infer(name, [features], outputs=outputs, request_id=f"req-{name}")
    assert result.get_response()["id"] == f"req-{name}"
    runtime = Model.load(repository / name).predict(rows)
    with torch.inference_mode():
        reference = [t.numpy() for t in model(torch.from_numpy(rows))]
    for output, expected in zip(model.output_names, reference):
        got = result.as_numpy(output)
        assert np.array_equal(got, runtime[output])  # the same session math, bit for bit
        assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_client_defaults_send_and_receive_binary(client, trained):
    _, rows = rows_of(trained, "zoo-mammal", 3)
    features = triton.InferInput("features", [3, 16], "FP32")
    features.set_data_from_numpy(rows)  # binary by default
    response = client.infer("zoo-mammal", [features]).get_response()  # no outputs: binary_data_output
    assert [o["name"] for o in response["outputs"]] == ["logits", "probabilities", "label"]
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])


def test_selected_outputs_only(client, trained):
    _, rows = rows_of(trained, "zoo-multiclass", 4)
    features = triton.InferInput("features", [4, 16], "FP32")
    features.set_data_from_numpy(rows)
    result = client.infer("zoo-multiclass", [features], outputs=[triton.InferRequestedOutput("label")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("label").dtype == np.int64 and result.as_numpy("probabilities") is None


def test_errors_reach_tritonclient_as_messages(client):
    features = triton.InferInput("features", [1, 3], "FP32")
    features.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("zoo-mammal", [features])
    assert error.value.status() == "400"
    assert error.value.message() == "input 'features' of model 'zoo-mammal' has shape [rows, 16], got [1, 3]"
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("nope")
    assert error.value.status() == "404" and error.value.message() == "unknown model 'nope'"


def test_v1_named_features_answer_class_names(server):
    address, _ = server
    status, body = json_request(
        address,
        "POST",
        "/v1/models/zoo-multiclass:predict",
        {
            "instances": [
                {"feathers": 1, "eggs": 1, "airborne": 1, "backbone": 1, "breathes": 1, "legs": 2, "tail": 1},
                {"hair": 1, "milk": 1, "toothed": 1, "backbone": 1, "breathes": 1, "legs": 4, "tail": 1},
            ]
        },
    )
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == ["bird", "mammal"]
    assert list(body["predictions"][0]["probabilities"])[:3] == ["mammal", "bird", "reptile"]
    status, body = json_request(address, "GET", "/v1/models/auto-mpg")
    assert (
        status == 200 and body["ready"] and body["target_names"] == ["mpg"] and "origin" in body["features"]
    )
    status, body = json_request(
        address,
        "POST",
        "/v1/models/auto-mpg:predict",
        {"instances": [{"cylinders": 4, "weight": 2000, "origin": "3"}]},
    )
    assert status == 200 and list(body["predictions"][0]) == ["mpg"]


def v2(data, shape=(1, 16), datatype="FP32", name="features", **extra):
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": data}], **extra}


ROW = [0.0] * 16
BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}
        ]
    }
).encode()
ERRORS = [  # (method, path, body, headers, status, exact error message)
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        "{not json",
        {},
        400,
        "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([ROW], name="x"),
        {},
        400,
        "model 'zoo-mammal' takes input 'features' [rows, 16] or inputs named after its features (hair, "
        "feathers, eggs, milk, airborne, aquatic, predator, toothed, backbone, breathes, venomous, fins, "
        "legs, tail, domestic, catsize), got ['x']",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([ROW], datatype="BYTES"),
        {},
        400,
        "datatype 'BYTES' is not a numeric tensor type",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([ROW], shape=(2, 16)),
        {},
        400,
        "shape needs 32 values, data has 16",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([0.0] * 15, shape=(1, 15)),
        {},
        400,
        "input 'features' of model 'zoo-mammal' has shape [rows, 16], got [1, 15]",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([1e39, *ROW[1:]]),
        {},
        400,  # overflows FP32
        "features contain ±Infinity; send NaN (or null) for a missing value",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([0.1, *ROW[1:]], datatype="FP64"),
        {},
        400,
        "FP64 values lose precision as FP32; send FP32",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([2**25] + [0] * 15, datatype="INT64"),
        {},
        400,
        "INT64 values beyond ±2^24 cannot be represented exactly in FP32",
    ),
    ("POST", "/v2/models/zoo-mammal/infer", v2(["1", *ROW[1:]]), {}, 400, "input data must be FP32 numbers"),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        BINARY_HEADER + b"\0" * 10,
        {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
        400,
        "binary data truncated: 64 bytes announced, 10 present",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        BINARY_HEADER,
        {"Inference-Header-Content-Length": "9999"},
        400,
        f"Inference-Header-Content-Length 9999 does not fit the {len(BINARY_HEADER)}-byte body",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        v2([ROW], outputs=[{"name": "scores"}]),
        {},
        400,
        "model 'zoo-mammal' has no output 'scores'; outputs: logits, probabilities, label",
    ),
    (
        "POST",
        "/v1/models/zoo-mammal:predict",
        {"instances": [{"wings": 2}]},
        {},
        400,
        "row 0: every feature is missing (ignored, not features: 'wings'); model 'zoo-mammal' takes hair, "
        "feathers, eggs, milk, airborne, aquatic, predator, toothed, backbone, breathes, venomous, fins, "
        "legs, tail, domestic, catsize",
    ),
    (
        "POST",
        "/v1/models/zoo-mammal:predict",
        {"rows": []},
        {},
        400,
        'request needs a non-empty "instances" list of rows',
    ),
    ("POST", "/v2/models/nope/infer", v2([ROW]), {}, 404, "unknown model 'nope'"),
    (
        "POST",
        "/v2/models/zoo-mammal/versions/2/infer",
        v2([ROW]),
        {},
        404,
        "model 'zoo-mammal' has no version '2' (serving 1)",
    ),
    ("GET", "/v2/models/..%2F..%2Fetc/ready", None, {}, 404, "unknown model '../../etc'"),
    ("GET", "/v2/nowhere", None, {}, 404, "no such endpoint: GET /v2/nowhere"),
    (
        "GET",
        "/v2/models/zoo-mammal/infer",
        None,
        {},
        405,
        "GET is not allowed on /v2/models/zoo-mammal/infer",
    ),
    (
        "POST",
        "/v2/models/zoo-mammal/infer",
        b"x" * (MAX_BODY + 1),
        {},
        413,
        f"body of {MAX_BODY + 1} bytes is over the limit of {MAX_BODY}",
    ),
]


@pytest.mark.parametrize(
    "method,path,body,headers,status,message", ERRORS, ids=[f"{e[4]}-{i}" for i, e in enumerate(ERRORS)]
)
def test_error_status_and_exact_json_then_a_valid_request_works(
    server, method, path, body, headers, status, message
):
    address, _ = server
    got_status, got_headers, data = request(address, method, path, body, headers)
    assert (got_status, json.loads(data)) == (status, {"error": message})
    assert got_headers["content-type"] == "application/json"
    ok_status, answer = json_request(address, "POST", "/v2/models/zoo-mammal/infer", v2([ROW]))
    assert ok_status == 200 and answer["outputs"][2]["name"] == "label"


def test_no_content_type_needed_and_binary_response_layout(server, trained, repository):
    address, _ = server
    _, rows = rows_of(trained, "auto-mpg", 2)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [2, 7],
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    status, headers, body = request(
        address,
        "POST",
        "/v2/models/auto-mpg/infer",
        header + rows.tobytes(),
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 200 and "content-type" in headers
    length = int(headers["inference-header-content-length"])
    response = json.loads(body[:length])
    (output,) = response["outputs"]
    assert output["parameters"]["binary_data_size"] == len(body) - length == 8
    predictions = struct.unpack("<2f", body[length:])
    expected = Model.load(repository / "auto-mpg").predict(rows)["prediction"]
    assert predictions == tuple(expected[:, 0].tolist())


def test_concurrent_clients_each_get_their_own_rows_and_batches_form(server, repository):
    address, running_server = server
    runtime = Model.load(repository / "auto-mpg")
    rng = np.random.default_rng(0)
    mean, spread = [5, 190, 100, 2900, 15, 76, 1], [1, 100, 35, 800, 3, 3, 0.5]
    requests = [rng.normal(mean, spread, (1, 7)).astype(np.float32) for _ in range(96)]  # distinct rows

    def batch_counts():
        sample = running_server.dataplane.metrics.registry.get_sample_value
        labels = {"model": "auto-mpg"}
        return (
            sample("inference_batch_rows_count", labels) or 0,
            sample("inference_batch_rows_bucket", {**labels, "le": "1.0"}) or 0,
        )

    def call(features):
        status, body = json_request(
            address, "POST", "/v2/models/auto-mpg/infer", v2(features.tolist(), shape=features.shape)
        )
        assert status == 200
        return np.array(body["outputs"][0]["data"], np.float32).reshape(-1, 1)

    calls_before, single_before = batch_counts()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, requests))
    for features, answer in zip(requests, answers):
        assert_allclose(answer, runtime.predict(features)["prediction"], rtol=1e-6)  # its own row's answer
    calls, single = batch_counts()
    merged = (calls - calls_before) - (single - single_before)  # onnxruntime calls that carried > 1 request
    assert merged >= 1 and calls - calls_before < len(requests), (calls - calls_before, merged)


def test_metrics_are_prometheus_text(server):
    address, _ = server
    json_request(address, "POST", "/v2/models/zoo-mammal/infer", v2([ROW]))
    status, headers, body = request(address, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'inference_requests_total{endpoint="v2_infer",model="zoo-mammal",status="200"}' in text
    for family in (
        "inference_request_duration_seconds_bucket",
        "inference_batch_rows_bucket",
        "inference_queue_seconds_bucket",
        "server_ready 1.0",
        'inference_queue_requests{model="zoo-mammal"} 0.0',  # answered, so nothing waits
    ):
        assert family in text


def test_readiness_false_with_zero_models(tmp_path):
    with running(Server(ServerConfig(repository=tmp_path), log=quiet)) as address:
        assert json_request(address, "GET", "/v2/health/live") == (200, {"live": True})
        assert json_request(address, "GET", "/v2/health/ready") == (
            503,
            {"error": f"not ready: no model in {tmp_path}"},
        )


def test_readiness_false_while_loading(repository, monkeypatch):
    release = threading.Event()
    server = Server(ServerConfig(repository=repository), log=quiet)
    repo = server.dataplane.repository
    original = repo.load_all
    monkeypatch.setattr(repo, "load_all", lambda log: (release.wait(10), original(log))[1])
    with running(server, wait_ready=False) as address:
        assert json_request(address, "GET", "/v2/health/ready") == (
            503,
            {"error": "not ready: loading models"},
        )
        assert json_request(address, "GET", "/v2/health/live") == (200, {"live": True})
        assert json_request(address, "GET", "/v2/models/auto-mpg/ready")[0] == 503
        release.set()
        for _ in range(200):
            if not repo.loading:
                break
            threading.Event().wait(0.01)
        assert json_request(address, "GET", "/v2/health/ready") == (200, {"ready": True})


def test_tampered_model_refused_others_served(repository, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(repository, copy)
    onnx_file = copy / "zoo-mammal" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with running(Server(ServerConfig(repository=copy), log=quiet)) as address:
        status, body = json_request(address, "GET", "/v2/health/ready")
        assert status == 503 and body["error"].startswith(
            "not ready: refused zoo-mammal: 1/model.onnx does not"
        )
        assert json_request(address, "GET", "/v2/models/auto-mpg/ready") == (
            200,
            {"name": "auto-mpg", "ready": True},
        )
        status, body = json_request(address, "POST", "/v2/models/zoo-mammal/infer", v2([ROW]))
        assert status == 503 and "does not match the sha256" in body["error"]
        status, index = json_request(address, "POST", "/v2/repository/index", {})
        assert [(m["name"], m["state"]) for m in index] == [
            ("auto-mpg", "READY"),
            ("zoo-mammal", "UNAVAILABLE"),
            ("zoo-multiclass", "READY"),
        ]


def test_full_queue_answers_503(repository):
    config = ServerConfig(repository=repository, batching=BatchingConfig(max_delay_us=200_000, max_queue=2))
    with running(Server(config, log=quiet)) as address, ThreadPoolExecutor(6) as pool:
        statuses = list(
            pool.map(
                lambda _: json_request(address, "POST", "/v2/models/zoo-mammal/infer", v2([ROW])), range(6)
            )
        )
    codes = sorted(s for s, _ in statuses)
    assert codes.count(503) >= 1 and codes.count(200) >= 2
    assert all(
        b == {"error": "model 'zoo-mammal' queue is full (2 requests)"} for s, b in statuses if s == 503
    )
