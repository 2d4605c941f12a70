"""The model's contract as clients see it, for real on 127.0.0.1: a client that knows only the server
(tritonclient reading the model configuration and metadata) builds its requests from them and gets
V1's answer; Triton's model configuration and statistics extensions over both transports; responses
checked against the protocols' own schemas (the OIP REST OpenAPI file in tests/protocol/, and
tritonclient's copies of Triton's grpc_service.proto and model_config.proto); one input rule for V1,
V2 inputs per feature and batch prediction; hostile input to what is new."""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path
from urllib.parse import quote

import grpc
import jsonschema
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import yaml
from google.protobuf import json_format, text_format
from numpy.testing import assert_allclose
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from bench.batch_predict import train_model
from pipeline.config import builtin_names
from serve.config import ServerConfig
from serve.server import Server
from tests.conftest import quiet, run_cli
from tests.serving import json_request, request, running

OPENAPI = Path(__file__).parents[1] / "protocol" / "open_inference_rest.yaml"
TEXT_MODEL = "synthetic"  # binary; text categorical features colour and city, 30 numeric ones
MODELS = [*builtin_names(), TEXT_MODEL]


@pytest.fixture(scope="module")
def repo(repository, tmp_path_factory) -> Path:
    """The built-in models and one with text categories, in one repository."""
    scratch = tmp_path_factory.mktemp("contract")
    text_model = train_model(scratch, 2000)
    repo = scratch / "served"
    for name in builtin_names():
        shutil.copytree(repository / name, repo / name)
    shutil.copytree(text_model, repo / TEXT_MODEL)
    return repo


@pytest.fixture(scope="module")
def server(repo):
    config = ServerConfig(repository=repo, max_rows=1024)
    with running(Server(config, log=quiet)) as address:
        yield address, f"127.0.0.1:{config.grpc_port}"


@pytest.fixture(scope="module")
def clients(server):
    with triton_grpc.InferenceServerClient(server[1]) as grpc_client:
        yield {"http": triton_http.InferenceServerClient(server[0]), "grpc": grpc_client}


# -- a client that knows only the server ------------------------------------------------------------
def discover(client, name: str) -> tuple[dict, list[int]]:
    """What the server says of a model: its schema (model configuration parameters) and the shape of
    its `features` input (model metadata). Nothing from the repository's files."""
    config = client.get_model_config(name)
    if isinstance(config, dict):  # HTTP: Triton's JSON
        text, shape = (
            config["parameters"]["schema"]["string_value"],
            client.get_model_metadata(name)["inputs"][0],
        )
        return json.loads(text), shape["shape"]
    text = config.config.parameters["schema"].string_value
    return json.loads(text), list(client.get_model_metadata(name).inputs[0].shape)


def rows_from(schema: dict, n: int = 4) -> list[dict]:
    """Rows of raw values that only the schema tells how to make: numbers for numeric features, the
    names of categories for categorical ones (a missing value too, in the last row)."""
    rows = []
    for i in range(n):
        row = {}
        for k, feature in enumerate(schema["features"]):
            if feature["kind"] == "categorical":
                row[feature["name"]] = feature["categories"][(i + k) % len(feature["categories"])]
            else:
                row[feature["name"]] = round(0.5 + i * 1.25 + k * 0.1, 3)
        rows.append(row)
    rows[-1][schema["features"][0]["name"]] = None
    return rows


def coded(schema: dict, rows: list[dict]) -> np.ndarray:
    """The `features` tensor: numbers, a category's code (the schema's), NaN for missing."""
    matrix = np.empty((len(rows), len(schema["features"])), np.float32)
    for j, feature in enumerate(schema["features"]):
        codes = dict(zip(feature.get("categories", []), feature.get("codes", [])))
        for i, row in enumerate(rows):
            value = row[feature["name"]]
            matrix[i, j] = np.nan if value is None else codes.get(value, value)
    return matrix


def infer(client, transport: str, name: str, schema: dict, rows: list[dict], way: str):
    module = triton_http if transport == "http" else triton_grpc
    if way == "codes":
        matrix = coded(schema, rows)
        features = module.InferInput("features", list(matrix.shape), "FP32")
        features.set_data_from_numpy(matrix)
        inputs = [features]
    else:  # one BYTES input per feature: everything as text
        inputs = []
        for feature in schema["features"]:
            values = ["" if r[feature["name"]] is None else str(r[feature["name"]]) for r in rows]
            tensor = module.InferInput(feature["name"], [len(rows)], "BYTES")
            tensor.set_data_from_numpy(np.array(values, dtype=object))
            inputs.append(tensor)
    return client.infer(name, inputs)


def v1_predictions(address: str, name: str, rows: list[dict]) -> list[dict]:
    status, body = json_request(address, "POST", f"/v1/models/{name}:predict", {"instances": rows})
    assert status == 200, body
    return body["predictions"]


@pytest.mark.parametrize("way", ["codes", "text"])
@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("name", MODELS)
def test_a_client_that_knows_only_the_server_gets_v1s_answer(server, clients, name, transport, way):
    client = clients[transport]
    schema, shape = discover(client, name)
    assert shape == [-1, len(schema["features"])]
    rows = rows_from(schema)
    result = infer(client, transport, name, schema, rows, way)
    expected = v1_predictions(server[0], name, rows)
    if schema["task"] == "regression":
        (target,) = schema["targets"]
        assert_allclose(result.as_numpy("prediction")[:, 0], [p[target] for p in expected], rtol=1e-6)
        return
    classes = schema["classes"]
    assert [classes[k] for k in result.as_numpy("label")] == [p["label"] for p in expected]
    probabilities = result.as_numpy("probabilities")
    if schema["task"] == "binary":  # [rows, 1]: the probability of classes[1] (the schema says so)
        assert "classes[1]" in schema["outputs"]["probabilities"]
        want = [[p["probabilities"][classes[1]]] for p in expected]
    else:
        want = [[p["probabilities"][c] for c in classes] for p in expected]
    assert_allclose(probabilities, want, rtol=1e-6, atol=1e-7)


def test_metadata_lists_features_categories_classes_and_outputs(server, repo):
    manifest = json.loads((repo / TEXT_MODEL / "manifest.json").read_text())
    status, v2 = json_request(server[0], "GET", f"/v2/models/{TEXT_MODEL}")
    assert status == 200 and list(v2["parameters"]) == ["schema"]
    schema = json.loads(v2["parameters"]["schema"])
    status, v1 = json_request(server[0], "GET", f"/v1/models/{TEXT_MODEL}")
    assert status == 200 and v1["schema"] == schema  # the same schema, nested in V1's JSON
    assert [f["name"] for f in schema["features"]] == [f["name"] for f in manifest["features"]]
    colour = next(f for f in schema["features"] if f["name"] == "colour")
    assert colour["categories"] == sorted(
        ["red", "green", "blue", "yellow", "black", "white", "purple", "orange"]
    )
    assert colour["codes"] == list(range(8)) and colour["kind"] == "categorical"
    assert schema["classes"] == manifest["class_names"] and schema["task"] == "binary"
    assert set(schema["outputs"]) == {"logits", "probabilities", "label"}


# -- Triton's model configuration and statistics extensions -------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_model_config_is_config_pbtxt_as_tritons_json_and_protobuf(server, clients, repo, name):
    expected = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    schema = json.loads(clients["http"].get_model_config(name)["parameters"]["schema"]["string_value"])
    expected.parameters["schema"].string_value = json.dumps(schema, separators=(",", ":"))
    for version in ("", "1"):
        as_json = clients["http"].get_model_config(name, version)
        # Triton's ModelConfig, field for field (ParseDict refuses any field model_config.proto lacks)
        assert json_format.ParseDict(as_json, model_config_pb2.ModelConfig()) == expected
        assert as_json["input"][0]["dims"] == [len(schema["features"])]  # 64-bit numbers as numbers
        assert as_json["max_batch_size"] == 4096 and as_json["dynamic_batching"]["preserve_ordering"] is False
        assert clients["grpc"].get_model_config(name, version).config == expected


def triton_stats(address: str, path: str):
    status, body = json_request(address, "GET", path)
    assert status == 200, body
    return json_format.ParseDict(body, service_pb2.ModelStatisticsResponse())  # Triton's own message


def test_statistics_count_requests_rows_executions_and_failures_on_both_transports(repository):
    config = ServerConfig(repository=repository)
    with running(Server(config, log=quiet)) as address:
        http = triton_http.InferenceServerClient(address)
        with triton_grpc.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as grpc_client:
            before = int(time.time() * 1000)
            for client, rows in ((http, 2), (grpc_client, 3)):
                module = triton_http if client is http else triton_grpc
                features = module.InferInput("features", [rows, 16], "FP32")
                features.set_data_from_numpy(np.ones((rows, 16), np.float32))
                client.infer("zoo-mammal", [features])
            assert (
                json_request(address, "POST", "/v1/models/zoo-mammal:predict", {"instances": [{"hair": 1}]})[
                    0
                ]
                == 200
            )
            assert (
                json_request(address, "POST", "/v1/models/zoo-mammal:predict", {"instances": [{}]})[0] == 400
            )
            http_stats = http.get_inference_statistics("zoo-mammal")
            grpc_stats = grpc_client.get_inference_statistics("zoo-mammal")
        (stats,) = json_format.ParseDict(http_stats, service_pb2.ModelStatisticsResponse()).model_stats
        assert grpc_stats.model_stats[0] == stats  # the same counters over both transports
        assert (stats.name, stats.version, stats.inference_count) == ("zoo-mammal", "1", 6)
        assert before <= stats.last_inference <= time.time() * 1000
        inference = stats.inference_stats
        assert (inference.success.count, inference.fail.count, inference.queue.count) == (3, 1, 3)
        assert inference.compute_infer.count == 3 and inference.success.ns >= inference.compute_infer.ns > 0
        assert 1 <= stats.execution_count <= 3
        assert set(http_stats["model_stats"][0]["inference_stats"]) == {
            "success",
            "fail",
            "queue",
            "compute_input",
            "compute_infer",
            "compute_output",
            "cache_hit",
            "cache_miss",
        }
        assert sum(b.compute_infer.count for b in stats.batch_stats) == stats.execution_count
        assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 6
        every = triton_stats(address, "/v2/models/stats")
        assert [(s.name, s.version) for s in every.model_stats] == [(n, "1") for n in sorted(builtin_names())]
        assert triton_stats(address, "/v2/models/zoo-mammal/versions/1/stats").model_stats[0] == stats
        assert triton_stats(address, "/v2/models/auto-mpg/stats").model_stats[0].inference_count == 0


def test_the_extension_list_names_both_extensions(clients):
    extensions = clients["http"].get_server_metadata()["extensions"]
    assert {"model_configuration", "statistics"} <= set(extensions)
    assert list(clients["grpc"].get_server_metadata().extensions) == extensions


# -- the protocols' own schemas ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def openapi() -> dict:
    return yaml.safe_load(OPENAPI.read_text())


def check(openapi: dict, component: str, body) -> None:
    schema = {"$ref": f"#/components/schemas/{component}", "components": openapi["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft4Validator)


def test_responses_validate_against_the_oip_openapi_schemas(server, openapi):
    address = server[0]
    check(openapi, "metadata_server_response", json_request(address, "GET", "/v2")[1])
    for name in MODELS:
        for path in (f"/v2/models/{name}", f"/v2/models/{name}/versions/1"):
            status, body = json_request(address, "GET", path)
            check(openapi, "metadata_model_response", body)
            assert all(isinstance(v, (str, int, float, bool)) for v in body["parameters"].values())
    request_body = {
        "id": "42",
        "inputs": [
            {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["red", " BLUE "]},
            {"name": "x00", "datatype": "FP32", "shape": [2, 1], "data": [[0.5], [None]]},
            {"name": "wings", "datatype": "FP32", "shape": [1], "data": [2]},
        ],
        "outputs": [{"name": "probabilities"}],
    }
    check(openapi, "inference_request", {**request_body, "inputs": request_body["inputs"][:1]})
    status, body = json_request(address, "POST", f"/v2/models/{TEXT_MODEL}/infer", request_body)
    assert status == 200 and body["parameters"] == {"ignored_inputs": '["wings"]'}
    check(openapi, "inference_response", body)
    for method, path, payload, component in [
        ("GET", "/v2/models/nope", None, "metadata_model_error_response"),
        ("GET", "/v2/models/nope/config", None, "metadata_model_error_response"),
        (
            "POST",
            f"/v2/models/{TEXT_MODEL}/infer",
            {"inputs": [{"name": "wings"}]},
            "inference_error_response",
        ),
    ]:
        status, body = json_request(address, method, path, payload)
        assert status in (400, 404)
        check(openapi, component, body)


# -- one input rule: V1, V2 inputs per feature (HTTP and gRPC), batch prediction ----------------------
BASE = {"x00": 0.25, "x01": -1.5, "colour": "red", "city": "city-07"}
RULE_CASES = {  # case → (row as sent, the row it must answer like)
    "extra field": ({**BASE, "wings": 2}, BASE),
    "missing field": ({k: v for k, v in BASE.items() if k != "x01"}, {**BASE, "x01": None}),
    "missing token": ({**BASE, "x01": " NA "}, {**BASE, "x01": None}),
    "case and spaces": ({**BASE, "colour": "  RED ", "city": "City-07"}, BASE),
    "unseen category": ({**BASE, "colour": "mauve"}, {**BASE, "colour": None}),
}


def v2_named(address: str, row: dict) -> tuple[int, dict]:
    inputs = [
        {"name": k, "datatype": "BYTES", "shape": [1], "data": [None if v is None else str(v)]}
        for k, v in row.items()
    ]
    return json_request(address, "POST", f"/v2/models/{TEXT_MODEL}/infer", {"inputs": inputs})


def grpc_named(address: str, row: dict):
    request = service_pb2.ModelInferRequest(model_name=TEXT_MODEL)
    for k, v in row.items():
        tensor = request.inputs.add(name=k, datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(b"" if v is None else str(v).encode())
    with grpc.insecure_channel(address) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)


def v2_probability(body: dict) -> float:
    return next(o for o in body["outputs"] if o["name"] == "probabilities")["data"][0]


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_one_input_rule_for_v1_v2_and_grpc(server, case):
    sent, like = RULE_CASES[case]
    (expected,) = v1_predictions(server[0], TEXT_MODEL, [like])
    status, v1 = json_request(server[0], "POST", f"/v1/models/{TEXT_MODEL}:predict", {"instances": [sent]})
    assert status == 200 and v1["predictions"] == [expected]
    assert v1.get("ignored") == (["wings"] if case == "extra field" else None)
    status, v2 = v2_named(server[0], sent)
    assert status == 200 and v2_probability(v2) == pytest.approx(expected["probabilities"]["1"], abs=1e-7)
    assert v2.get("parameters") == ({"ignored_inputs": '["wings"]'} if case == "extra field" else None)
    response = grpc_named(server[1], sent)
    raw = dict(zip([o.name for o in response.outputs], response.outputs))["probabilities"]
    assert raw.contents.fp32_contents[0] == pytest.approx(expected["probabilities"]["1"], abs=1e-7)
    ignored = response.parameters["ignored_inputs"].string_param if response.parameters else None
    assert ignored == ('["wings"]' if case == "extra field" else None)


def test_a_row_that_gives_no_feature_is_refused_everywhere(server):
    nothing = {"x00": None, "colour": " n/a ", "wings": 3}
    status, body = json_request(
        server[0], "POST", f"/v1/models/{TEXT_MODEL}:predict", {"instances": [nothing]}
    )
    assert status == 400 and body["error"].startswith(
        "row 0: every feature is missing (ignored, not features: 'wings'); model 'synthetic' takes x00, x01"
    )
    status, body = v2_named(server[0], nothing)
    assert status == 400 and body["error"].startswith("row 0: every feature is missing; model 'synthetic'")
    with pytest.raises(grpc.RpcError) as error:
        grpc_named(server[1], nothing)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error.value.details() == body["error"]


def test_batch_prediction_follows_the_same_rule(server, repo, tmp_path):
    cases = list(RULE_CASES)
    header = ["x00", "x01", "colour", "city", "wings"]  # x02..x29 absent: missing, as in the V1 rows
    lines = [",".join(header)]
    for case in cases:
        sent = RULE_CASES[case][0]
        lines.append(",".join("" if sent.get(c) is None else f'"{sent[c]}"' for c in header))
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    result = run_cli(
        "-m", "serve", "predict", "--model", str(repo / TEXT_MODEL), "--data", str(tmp_path / "rows.csv")
    )
    assert result.returncode == 0, result.stderr
    assert "rows.csv: ignoring column(s) that are not features of the model: wings" in result.stderr
    assert "rows.csv: no column(s) x02, x03" in result.stderr
    written = [line.split(",") for line in result.stdout.splitlines()[1:]]
    expected = v1_predictions(server[0], TEXT_MODEL, [RULE_CASES[case][1] for case in cases])
    assert [row[0] for row in written] == [p["label"] for p in expected]
    assert_allclose(
        [float(row[2]) for row in written], [p["probabilities"]["1"] for p in expected], rtol=1e-6
    )
    (tmp_path / "blank.csv").write_text("x00,colour,wings\n1,red,2\n , NA ,3\n")
    result = run_cli(
        "-m", "serve", "predict", "--model", str(repo / TEXT_MODEL), "--data", str(tmp_path / "blank.csv")
    )
    assert result.returncode == 2 and "blank.csv line 3: every feature is missing" in result.stderr


# -- hostile input to what is new ---------------------------------------------------------------------
ODD_NAMES = ["..", "%2E%2E", "a%2Fb", "%00", "x" * 5000, "%FF%FE", "zoo-mammal%0A", "stats%2F.."]
ODD_VERSIONS = ["0", "01", "-1", "1.0", "99999999999999999999", "%20", "v" * 5000, "%C2%B2", "%FF"]


def one_line_error(status: int, body: bytes, statuses=(400, 404)) -> str:
    assert status in statuses, (status, body[:200])
    message = json.loads(body)["error"]
    assert "\n" not in message and len(message) <= 500 and "Traceback" not in message
    return message


@pytest.mark.parametrize("suffix", ["config", "stats"])
def test_odd_names_and_versions_on_the_new_endpoints_are_4xx_with_one_line(server, suffix):
    for name in ODD_NAMES:
        one_line_error(*request(server[0], "GET", f"/v2/models/{name}/{suffix}")[::2])
        one_line_error(*request(server[0], "GET", f"/v2/models/{name}/versions/1/{suffix}")[::2])
    for version in ODD_VERSIONS:
        one_line_error(*request(server[0], "GET", f"/v2/models/zoo-mammal/versions/{version}/{suffix}")[::2])
    with grpc.insecure_channel(server[1]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelConfig if suffix == "config" else stub.ModelStatistics
        message = service_pb2.ModelConfigRequest if suffix == "config" else service_pb2.ModelStatisticsRequest
        odd = [
            (n, "")
            for n in [
                "..",
                "a/b",
                "\0",
                "x" * 5000,
                "\udcff".encode(errors="surrogateescape").decode("latin-1"),
            ]
        ]
        for name, version in [
            *odd,
            *(("zoo-mammal", v) for v in ["0", "01", "-1", "1.0", "9" * 30, "²", "v" * 5000]),
        ]:
            with pytest.raises(grpc.RpcError) as error:
                call(message(name=name, version=version), timeout=10)
            assert error.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
            assert "\n" not in error.value.details() and len(error.value.details()) <= 500


def bytes_body(name: str, elements: list[bytes]) -> tuple[bytes, dict]:
    """A V2 binary body with one BYTES input (Triton's layout: 4-byte length, then the bytes)."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "BYTES",
                    "shape": [len(elements)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize(
    "elements,message",
    [
        ([b"\xff\xfe red"], "input 'colour' element 0 is not UTF-8 text"),
        ([b"r" * 100_000], "input 'colour' element 0: a text of 100000 characters (at most 4096)"),
        ([b"red", "é".encode() * 5000], "input 'colour' element 1: a text of 5000 characters (at most 4096)"),
    ],
)
def test_hostile_text_is_refused_with_one_line_on_both_transports(server, elements, message):
    body, headers = bytes_body("colour", elements)
    status, _, answer = request(server[0], "POST", f"/v2/models/{TEXT_MODEL}/infer", body, headers)
    assert one_line_error(status, answer) == message
    request_message = service_pb2.ModelInferRequest(model_name=TEXT_MODEL)
    request_message.inputs.add(name="colour", datatype="BYTES", shape=[len(elements)])
    request_message.raw_input_contents.append(b"".join(struct.pack("<I", len(e)) + e for e in elements))
    with grpc.insecure_channel(server[1]) as channel, pytest.raises(grpc.RpcError) as error:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request_message, timeout=10)
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    "raw,message",
    [
        (struct.pack("<I", 1000) + b"red", "input 'colour': element 0 claims 1000 bytes, 3 remain"),
        (b"\x03\x00", "input 'colour': BYTES data ends before element 0 of 1"),
        (struct.pack("<I", 3) + b"redextra", "input 'colour': 5 bytes after its 1 elements"),
    ],
)
def test_lying_bytes_lengths_are_refused(server, raw, message):
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "colour",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    status, _, answer = request(
        server[0],
        "POST",
        f"/v2/models/{TEXT_MODEL}/infer",
        header + raw,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert one_line_error(status, answer) == message


@pytest.mark.parametrize(
    "inputs,message",
    [
        (
            [{"name": "colour", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}],
            "input 'colour' has shape [rows] or [rows, 1], got [1, 2]",
        ),
        (
            [
                {"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["red"]},
                {"name": "x00", "datatype": "FP32", "shape": [2], "data": [1, 2]},
            ],
            "inputs have different row counts: colour 1, x00 2",
        ),
        (
            [
                {"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["red"]},
                {"name": "features", "datatype": "FP32", "shape": [1, 32], "data": [0] * 32},
            ],
            "send either 'features' or one input per feature, not both (got 'features' and 'colour')",
        ),
        (
            [{"name": "colour", "datatype": "BYTES", "shape": [1], "data": [7]}],
            "input 'colour' needs 1 strings (or null), one per row",
        ),
        (
            [{"name": "x00", "datatype": "BYTES", "shape": [1], "data": ["heavy"]}],
            "row 0: feature 'x00': 'heavy' is not a number",
        ),
        (
            [{"name": "x00", "datatype": "FP64", "shape": [1], "data": [1e300]}],
            "FP64 values lose precision as FP32; send FP32",
        ),
        (
            [{"name": "colour", "datatype": "STRING", "shape": [1], "data": ["red"]}],
            "input 'colour': datatype 'STRING' is not BYTES or a numeric type",
        ),
        (
            [{"name": "colour", "datatype": "BYTES", "shape": [5000], "data": ["red"] * 5000}],
            "5000 rows is more than the limit of 1024 per request",
        ),
    ],
)
def test_malformed_inputs_per_feature_are_refused_with_the_reason(server, inputs, message):
    status, body = json_request(server[0], "POST", f"/v2/models/{TEXT_MODEL}/infer", {"inputs": inputs})
    assert (status, body) == (400, {"error": message})


def test_a_huge_quoted_name_stays_one_short_line(server):
    status, _, body = request(server[0], "GET", "/v2/models/" + quote("ü" * 3000) + "/config")
    assert one_line_error(status, body).startswith("unknown model")
    with pytest.raises(InferenceServerException) as error:
        triton_http.InferenceServerClient(server[0]).get_model_config("zoo-mammal", "7")
    assert (
        error.value.status() == "404"
        and error.value.message() == "model 'zoo-mammal' has no version '7' (serving 1)"
    )
