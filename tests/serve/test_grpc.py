"""The gRPC server, for real on 127.0.0.1: stock tritonclient.grpc (and its own protobuf messages)
against it for health, metadata and inference on every model, typed and raw contents, every error code
with the same message as HTTP, limits, and the server's messages side by side with tritonclient's."""

from __future__ import annotations

import json
import shutil
from urllib.parse import quote

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from pipeline.checks import parity
from pipeline.config import builtin_names
from serve.batching import BatchingConfig
from serve.config import ServerConfig
from serve.grpc.messages import POOL
from serve.model import Model
from serve.server import Server
from tests.conftest import quiet
from tests.serving import json_request, running

MAX_ROWS = 512
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def server(repository):
    config = ServerConfig(
        repository=repository,
        max_body_bytes=MAX_BODY,
        max_rows=MAX_ROWS,
        batching=BatchingConfig(max_delay_us=2000),
    )
    server = Server(config, log=quiet)
    with running(server) as address:
        yield address, f"127.0.0.1:{config.grpc_port}", server


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server[1]) as stock:
        yield stock


@pytest.fixture(scope="module")
def stub(server):
    """tritonclient's own generated stub and messages, for what its high-level client does not send."""
    with grpc.insecure_channel(server[1]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def held_out_rows(trained, name, n=40):
    model, payload = trained[name]
    return parity.parity_rows(model.spec.features, payload["held_out"].numpy())[:n]


def test_our_messages_are_tritons_on_the_wire():
    """Every message and field we define, and every message they use (ModelConfig's whole tree
    included), exists in Triton's grpc_service.proto and model_config.proto (as tritonclient ships them)
    with the same number, type and label, and every RPC has Triton's request and response types."""
    ours, theirs = POOL.FindServiceByName("inference.GRPCInferenceService"), service_pb2.DESCRIPTOR
    triton_service = theirs.services_by_name["GRPCInferenceService"]

    def fields(message):
        found = {}
        for f in message.fields:
            found[f.name] = (f.number, f.type, f.is_repeated, f.message_type and f.message_type.full_name)
        for nested in message.nested_types:
            found.update({f"{nested.name}.{k}": v for k, v in fields(nested).items()})
        return found

    def used(message, seen):
        if message.full_name in seen:
            return
        seen[message.full_name] = message
        for f in message.fields:
            if f.message_type is not None:
                used(f.message_type, seen)
        for nested in message.nested_types:
            used(nested, seen)

    checked, seen = 0, {}
    for method in ours.methods:
        reference = triton_service.methods_by_name[method.name]
        for mine, tritons in (
            (method.input_type, reference.input_type),
            (method.output_type, reference.output_type),
        ):
            assert mine.full_name == tritons.full_name
            used(mine, seen)
            checked += 1
    assert checked == 22 and "inference.ModelConfig" in seen and "inference.StatisticDuration" in seen
    pool = theirs.pool
    for name, mine in seen.items():
        mine_fields, triton_fields = fields(mine), fields(pool.FindMessageTypeByName(name))
        assert mine_fields == {k: triton_fields.get(k) for k in mine_fields}, name
    assert len(seen) > 60  # ModelConfig's tree is large; a trimmed copy would show here


def test_health_and_metadata_through_tritonclient(client, repository):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("auto-mpg") and client.is_model_ready("auto-mpg", "1")
    assert not client.is_model_ready("auto-mpg", "2") and not client.is_model_ready("nope")
    assert not client.is_model_ready("..%2F..")
    metadata = client.get_server_metadata()
    assert (metadata.name, list(metadata.extensions)) == (
        "tabular-deploy",
        ["binary_tensor_data", "model_repository", "model_configuration", "statistics"],
    )
    for name in builtin_names():
        manifest = json.loads((repository / name / "manifest.json").read_text())
        for version in ("", "1"):
            metadata = client.get_model_metadata(name, version)
            assert (metadata.name, list(metadata.versions), metadata.platform) == (
                name,
                ["1"],
                "onnxruntime_onnx",
            )
            for side in ("inputs", "outputs"):
                got = [
                    {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                    for t in getattr(metadata, side)
                ]
                assert got == [{k: t[k] for k in ("name", "datatype", "shape")} for t in manifest[side]]


@pytest.mark.parametrize("name", builtin_names())
def test_infer_raw_contents_equals_the_runtime(client, repository, trained, name):
    rows = held_out_rows(trained, name)
    features = triton.InferInput("features", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)  # raw_input_contents, tritonclient's only way
    result = client.infer(name, [features], request_id=f"req-{name}")
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == (f"req-{name}", name, "1")
    runtime = Model.load(repository / name).predict(rows)
    assert [o.name for o in response.outputs] == list(runtime)
    for output, expected in runtime.items():
        got = result.as_numpy(output)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)  # the same session, bit for bit


@pytest.mark.parametrize("name", builtin_names())
def test_infer_typed_contents_equals_the_runtime(stub, repository, trained, name):
    rows = held_out_rows(trained, name, 9)
    request = service_pb2.ModelInferRequest(model_name=name, model_version="1", id="typed")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=list(rows.shape))
    tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    response = stub.ModelInfer(request, timeout=10)
    assert not response.raw_output_contents  # typed in, typed out
    runtime = Model.load(repository / name).predict(rows)
    for output in response.outputs:
        expected = runtime[output.name]
        assert list(output.shape) == list(expected.shape)
        values = (
            output.contents.int64_contents if output.datatype == "INT64" else output.contents.fp32_contents
        )
        assert np.array_equal(np.array(values, expected.dtype).reshape(expected.shape), expected)


def test_integer_typed_contents_and_selected_outputs(stub, client, repository):
    rows = np.array([[1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 4, 0, 0, 1]] * 3, np.int64)
    request = service_pb2.ModelInferRequest(model_name="zoo-multiclass")
    tensor = request.inputs.add(name="features", datatype="INT64", shape=[3, 16])
    tensor.contents.int64_contents.extend(rows.ravel().tolist())
    request.outputs.add(name="label")
    response = stub.ModelInfer(request, timeout=10)
    expected = Model.load(repository / "zoo-multiclass").predict(rows.astype(np.float32))["label"]
    assert [o.name for o in response.outputs] == ["label"]
    assert list(response.outputs[0].contents.int64_contents) == expected.tolist()
    features = triton.InferInput("features", [3, 16], "FP32")
    features.set_data_from_numpy(rows.astype(np.float32))
    result = client.infer(
        "zoo-multiclass", [features], outputs=[triton.InferRequestedOutput("probabilities")]
    )
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    assert result.as_numpy("label") is None and result.as_numpy("probabilities").shape == (3, 7)


ROW = [0.0] * 16
CASES = [  # (model, version, input name, datatype, shape, values, outputs, HTTP status, gRPC code)
    ("zoo-mammal", "", "x", "FP32", [1, 16], ROW, [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "BYTES", [1, 16], ROW, [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP32", [1, 15], ROW[:15], [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP32", [2, 16], ROW, [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP32", [1, 16, 1], ROW, [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP32", [MAX_ROWS + 1, 16], ROW, [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP64", [1, 16], [0.1, *ROW[1:]], [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "INT64", [1, 16], [2**25] + [0] * 15, [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP64", [1, 16], [1e300, *ROW[1:]], [], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP32", [1, 16], ROW, ["scores"], 400, "INVALID_ARGUMENT"),
    ("zoo-mammal", "", "features", "FP32", [1, 16], ROW, ["label", "label"], 400, "INVALID_ARGUMENT"),
    ("nope", "", "features", "FP32", [1, 16], ROW, [], 404, "NOT_FOUND"),
    ("../../etc", "", "features", "FP32", [1, 16], ROW, [], 404, "NOT_FOUND"),
    ("zoo-mammal", "2", "features", "FP32", [1, 16], ROW, [], 404, "NOT_FOUND"),
]


def grpc_request(model, version, name, datatype, shape, values, outputs, raw: bool):
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if raw:
        dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "BYTES": "<f4"}[datatype]
        request.raw_input_contents.append(np.array(values, dtype).tobytes())
    else:
        field = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents"}.get(datatype)
        getattr(tensor.contents, field or "bytes_contents").extend(values if field else [b"0"])
    for output in outputs:
        request.outputs.add(name=output)
    return request


# raw contents of the wrong length have their own message (test_grpc_only_errors)
PAIRS = [(c, raw) for c in CASES for raw in (True, False) if not (raw and c[4] == [2, 16])]


@pytest.mark.parametrize(
    "case,raw", PAIRS, ids=[f"{c[8]}-{CASES.index(c)}-{'raw' if r else 'typed'}" for c, r in PAIRS]
)
def test_errors_have_their_code_and_the_http_message(server, stub, case, raw):
    address, _, _ = server
    model, version, name, datatype, shape, values, outputs, http_status, code = case
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(grpc_request(*case[:7], raw), timeout=10)
    path = f"/v2/models/{quote(model, safe='')}{'/versions/' + version if version else ''}/infer"
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": values}]}
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    status, answer = json_request(address, "POST", path, body)
    assert (error.value.code().name, error.value.details()) == (code, answer["error"])
    assert status == http_status
    ok = stub.ModelInfer(
        grpc_request("zoo-mammal", "", "features", "FP32", [1, 16], ROW, [], raw), timeout=10
    )
    assert [o.name for o in ok.outputs] == ["logits", "probabilities", "label"]


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 10),
            "raw_input_contents holds 10 bytes; shape [1, 16] of FP32 needs 64",
        ),
        (lambda r: r.raw_input_contents.append(b""), "raw_input_contents has 2 entries for 1 input"),
        (
            lambda r: r.inputs[0].contents.fp32_contents.append(1.0),
            "input 'features' has both contents and raw_input_contents",
        ),
        (
            lambda r: r.raw_input_contents.__setitem__(0, np.full(16, np.inf, "<f4").tobytes()),
            "features contain ±Infinity; send NaN (or null) for a missing value",
        ),
        (
            lambda r: setattr(r.inputs[0], "datatype", "FP16"),
            "raw_input_contents holds 64 bytes; shape [1, 16] of FP16 needs 32",
        ),
        (
            lambda r: r.inputs.add(name="features", datatype="FP32", shape=[1, 16]),
            "input 'features' is given twice",
        ),
        (
            lambda r: r.ClearField("inputs"),
            "model 'zoo-mammal' takes input 'features' [rows, 16] or inputs named after its features (hair, "
            "feathers, eggs, milk, airborne, aquatic, predator, toothed, backbone, breathes, venomous, fins, "
            "legs, tail, domestic, catsize), got []",
        ),
    ],
)
def test_grpc_only_errors(stub, mutate, message):
    request = grpc_request("zoo-mammal", "", "features", "FP32", [1, 16], ROW, [], raw=True)
    mutate(request)
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request, timeout=10)
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_typed_fp16_needs_raw_contents(stub):
    request = grpc_request("zoo-mammal", "", "features", "FP32", [1, 16], ROW, [], raw=False)
    request.inputs[0].datatype = "FP16"
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request, timeout=10)
    assert error.value.details() == "FP16 values must be sent in raw_input_contents"


def test_message_over_the_size_limit_is_resource_exhausted(stub):
    rows = MAX_BODY // 64 + 16
    request = grpc_request("zoo-mammal", "", "features", "FP32", [rows, 16], ROW * rows, [], raw=True)
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_undecodable_message_is_invalid_argument(server):
    with grpc.insecure_channel(server[1]) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as error:
            call(b"\xff\xff\xff", timeout=10)
    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "request is not a valid ModelInferRequest",
    )


def test_rpcs_not_served_are_unimplemented(client):
    with pytest.raises(InferenceServerException) as error:
        client.get_trace_settings("zoo-mammal")
    assert error.value.status() == "StatusCode.UNIMPLEMENTED"


def test_full_queue_is_resource_exhausted_with_the_http_message(repository):
    from concurrent.futures import ThreadPoolExecutor

    config = ServerConfig(repository=repository, batching=BatchingConfig(max_delay_us=200_000, max_queue=2))
    with (
        running(Server(config, log=quiet)) as _,
        triton.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as c,
    ):
        features = triton.InferInput("features", [1, 16], "FP32")
        features.set_data_from_numpy(np.zeros((1, 16), np.float32))

        def call(_):
            try:
                c.infer("zoo-mammal", [features])
                return "OK", ""
            except InferenceServerException as exc:
                return exc.status(), exc.message()

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(call, range(6)))
    refused = [a for a in answers if a[0] != "OK"]
    assert refused and len(refused) <= 4
    assert set(refused) == {
        ("StatusCode.RESOURCE_EXHAUSTED", "model 'zoo-mammal' queue is full (2 requests)")
    }


def test_refused_model_is_unavailable_and_server_not_ready(repository, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(repository, copy)
    onnx_file = copy / "zoo-mammal" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    config = ServerConfig(repository=copy)
    with (
        running(Server(config, log=quiet)) as address,
        triton.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as c,
    ):
        assert c.is_server_live() and not c.is_server_ready() and not c.is_model_ready("zoo-mammal")
        features = triton.InferInput("features", [1, 16], "FP32")
        features.set_data_from_numpy(np.zeros((1, 16), np.float32))
        with pytest.raises(InferenceServerException) as error:
            c.infer("zoo-mammal", [features])
        status, body = json_request(address, "POST", "/v2/models/zoo-mammal/infer", {"inputs": []})
        assert (error.value.status(), error.value.message()) == ("StatusCode.UNAVAILABLE", body["error"])
        assert status == 503 and "does not match the sha256" in body["error"]
        index = c.get_model_repository_index().models
        assert [(m.name, m.version, m.state) for m in index] == [
            ("auto-mpg", "1", "READY"),
            ("zoo-mammal", "1", "UNAVAILABLE"),
            ("zoo-multiclass", "1", "READY"),
        ]
        assert "does not match the sha256" in index[1].reason


def test_grpc_requests_are_counted_in_metrics(server, client):
    _, _, running_server = server
    features = triton.InferInput("features", [1, 7], "FP32")
    features.set_data_from_numpy(np.zeros((1, 7), np.float32))
    sample = running_server.dataplane.metrics.registry.get_sample_value
    labels = {"model": "auto-mpg", "endpoint": "grpc_infer", "status": "200"}
    before = sample("inference_requests_total", labels) or 0
    client.infer("auto-mpg", [features])
    client.infer("auto-mpg", [features])
    assert sample("inference_requests_total", labels) == before + 2
