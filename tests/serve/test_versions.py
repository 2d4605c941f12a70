"""Versions and the model lifecycle: config.pbtxt's version_policy, every served version answering over
HTTP and gRPC, the poll picking up new, broken and removed versions, Triton's explicit load and unload,
and queued requests finishing on the version they were queued for."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from google.protobuf import text_format
from numpy.testing import assert_allclose
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from export.repository import DEFAULT_VERSION_POLICY, config_pbtxt
from serve.batching import BatchingConfig
from serve.config import ServerConfig
from serve.policy import PolicyError, VersionPolicy, version_policy
from serve.server import Server
from tests.conftest import quiet
from tests.serving import json_request, running
from tests.versions import (
    MODEL,
    car_rows,
    outputs_of,
    publish_corrupt_version,
    publish_version,
    set_version_policy,
    shifted,
)

ROWS = car_rows(5)


@pytest.fixture
def repo(repository, tmp_path):
    """auto-mpg alone, version 1 as exported."""
    copy = tmp_path / "models"
    shutil.copytree(repository / MODEL, copy / MODEL)
    return copy


@pytest.fixture
def three_versions(repo):
    """Versions 1, 2, 3 answering prediction + 0, 10, 20; returns (repo, {version: expected outputs})."""
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    for offset in (10.0, 20.0):
        publish_version(repo, shifted(original, offset))
    expected = {v: outputs_of((repo / MODEL / str(v) / "model.onnx").read_bytes(), ROWS) for v in (1, 2, 3)}
    return repo, expected


def http_infer(address: str, version: str | None = None) -> tuple[int, dict]:
    path = f"/v2/models/{MODEL}{f'/versions/{version}' if version else ''}/infer"
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [5, 7], "data": ROWS.tolist()}]}
    return json_request(address, "POST", path, body)


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def index_of(address: str) -> list[tuple]:
    status, rows = json_request(address, "POST", "/v2/repository/index", {})
    assert status == 200
    return [(r["name"], r.get("version"), r["state"]) for r in rows]


@pytest.mark.parametrize(
    "policy,served",
    [
        (DEFAULT_VERSION_POLICY, ["3"]),
        ("version_policy: { latest: { num_versions: 2 } }", ["2", "3"]),
        ("version_policy: { all { } }", ["1", "2", "3"]),
        ("version_policy { specific { versions: [1, 3] } }", ["1", "3"]),
    ],
)
def test_version_policy_decides_what_answers_over_both_transports(three_versions, policy, served):
    repo, expected = three_versions
    set_version_policy(repo, policy)
    config = ServerConfig(repository=repo, poll_s=0)
    with (
        running(Server(config, log=quiet)) as address,
        triton_grpc.InferenceServerClient(f"127.0.0.1:{config.grpc_port}") as client,
    ):
        assert index_of(address) == [(MODEL, v, "READY") for v in served]
        assert json_request(address, "GET", f"/v2/models/{MODEL}")[1]["versions"] == served
        assert list(client.get_model_metadata(MODEL).versions) == served
        for version in ("1", "2", "3"):
            status, body = http_infer(address, version)
            features = triton_grpc.InferInput("features", [5, 7], "FP32")
            features.set_data_from_numpy(ROWS)
            if version not in served:
                assert (status, body) == (
                    404,
                    {"error": f"model '{MODEL}' has no version '{version}' (serving {', '.join(served)})"},
                )
                assert not client.is_model_ready(MODEL, version)
                continue
            want = expected[int(version)]["prediction"]
            assert status == 200 and body["model_version"] == version
            assert_allclose(np.reshape(body["outputs"][0]["data"], (5, 1)), want, rtol=1e-6)
            result = client.infer(MODEL, [features], model_version=version)
            assert result.get_response().model_version == version
            assert np.array_equal(result.as_numpy("prediction"), want)
        status, body = http_infer(address)  # no version: the highest served
        assert body["model_version"] == served[-1]


def test_poll_serves_new_versions_refuses_broken_ones_and_drops_removed_models(repo):
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    lines = []
    config = ServerConfig(repository=repo, poll_s=0.05)
    with running(Server(config, log=lines.append)) as address:
        assert http_infer(address)[1]["model_version"] == "1"
        publish_version(repo, shifted(original, 10.0))
        wait_for(lambda: index_of(address) == [(MODEL, "2", "READY")])
        status, body = http_infer(address)
        assert status == 200 and body["model_version"] == "2"
        assert_allclose(
            np.reshape(body["outputs"][0]["data"], (5, 1)),
            outputs_of(original, ROWS)["prediction"] + 10,
            rtol=1e-6,
        )
        wait_for(lambda: f"unloaded {MODEL} version 1 (its queue drained)" in lines)

        publish_corrupt_version(repo, shifted(original, 30.0))  # version 3, damaged: refused, 2 serves on
        wait_for(lambda: (MODEL, "3", "UNAVAILABLE") in index_of(address))
        assert index_of(address) == [(MODEL, "2", "READY"), (MODEL, "3", "UNAVAILABLE")]
        reason = "3/model.onnx does not match the sha256 in manifest.json (changed or corrupted on disk)"
        assert json_request(address, "POST", "/v2/repository/index", {})[1][1]["reason"] == reason
        assert json_request(address, "GET", f"/v2/models/{MODEL}/versions/3/ready") == (
            503,
            {"error": f"model '{MODEL}' version 3 is not available: {reason}"},
        )
        assert json_request(address, "GET", "/v2/health/ready") == (200, {"ready": True})
        assert http_infer(address)[1]["model_version"] == "2"
        assert any(line.startswith(f"refused {MODEL} version 3: {reason}") for line in lines)

        shutil.rmtree(repo / MODEL)
        wait_for(lambda: index_of(address) == [])
        assert http_infer(address) == (404, {"error": f"unknown model '{MODEL}'"})


def rename_feature(manifest: dict) -> None:
    """A breaking change the graph does not see: `model_year` is called `year` from now on."""
    next(f for f in manifest["features"] if f["name"] == "model_year")["name"] = "year"


def test_a_version_that_breaks_the_served_schema_is_refused_unless_allowed(repo):
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    config = ServerConfig(repository=repo, poll_s=0.05)
    with running(Server(config, log=quiet)) as address:
        publish_version(repo, shifted(original, 10.0), edit=rename_feature)  # as if copied in by hand
        wait_for(lambda: (MODEL, "2", "UNAVAILABLE") in index_of(address))
        assert index_of(address) == [(MODEL, "1", "READY"), (MODEL, "2", "UNAVAILABLE")]
        reason = json_request(address, "POST", "/v2/repository/index", {})[1][1]["reason"]
        assert reason == (
            "its input schema breaks version 1's, which clients use now: feature(s) removed: 'model_year'; "
            "feature(s) added: 'year' (publish it under a new model name, or export it with --allow-breaking)"
        )
        row = {"instances": [{"cylinders": 4, "model_year": 80}]}
        assert json_request(address, "POST", f"/v1/models/{MODEL}:predict", row)[0] == 200  # 1 serves on
        publish_version(repo, shifted(original, 20.0), breaking=["renamed"])  # its manifest says year too
        wait_for(lambda: index_of(address)[:1] == [(MODEL, "3", "READY")])
        status, body = json_request(address, "POST", f"/v1/models/{MODEL}:predict", row)
        assert status == 200 and body["ignored"] == ["model_year"]  # clients of version 1 now see the break
        metadata = json_request(address, "GET", f"/v2/models/{MODEL}")[1]
        assert "year" in [f["name"] for f in json.loads(metadata["parameters"]["schema"])["features"]]


def test_explicit_unload_and_load_over_http_and_grpc(repo):
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    config = ServerConfig(repository=repo, poll_s=0.05)
    with running(Server(config, log=quiet)) as address:
        http = triton_http.InferenceServerClient(address)
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{config.grpc_port}")
        http.unload_model(MODEL)
        assert not http.is_model_ready(MODEL) and not grpc_client.is_model_ready(MODEL)
        assert http_infer(address) == (503, {"error": f"model '{MODEL}' is not available: unloaded"})
        assert json_request(address, "POST", "/v2/repository/index", {})[1] == [
            {"name": MODEL, "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        assert json_request(address, "POST", "/v2/repository/index", {"ready": True})[1] == []
        publish_version(repo, shifted(original, 10.0))
        time.sleep(0.3)  # six poll intervals: an unloaded model stays unloaded
        assert not http.is_model_ready(MODEL)

        grpc_client.load_model(MODEL)
        assert http.is_model_ready(MODEL, "2") and http_infer(address)[1]["model_version"] == "2"
        grpc_client.unload_model(MODEL)
        assert not grpc_client.is_model_ready(MODEL)
        http.load_model(MODEL)
        assert grpc_client.is_model_ready(MODEL, "2")

        publish_corrupt_version(repo, shifted(original, 20.0))  # version 3
        message = (
            f"failed to load '{MODEL}': version 3: 3/model.onnx does not match the sha256 in manifest.json "
            "(changed or corrupted on disk) (serving 2)"
        )
        with pytest.raises(InferenceServerException) as error:
            http.load_model(MODEL)
        assert (error.value.status(), error.value.message()) == ("400", message)
        with pytest.raises(InferenceServerException) as error:
            grpc_client.load_model(MODEL)
        assert (error.value.status(), error.value.message()) == ("StatusCode.INVALID_ARGUMENT", message)
        assert http_infer(address)[1]["model_version"] == "2"  # the old version serves on

        with pytest.raises(InferenceServerException) as error:
            http.load_model("nope")
        assert (error.value.status(), error.value.message()) == (
            "404",
            "no model directory 'nope' in the repository",
        )
        with pytest.raises(InferenceServerException) as error:
            grpc_client.unload_model("../x")
        assert error.value.status() == "StatusCode.NOT_FOUND"
        for name in ("..", ".", "%2E%2E", ".hidden"):  # never the repository's parent, never a staging dir
            assert json_request(address, "POST", f"/v2/repository/models/{name}/load") == (
                404,
                {"error": f"no model directory {name.replace('%2E', '.')!r} in the repository"},
            )
        assert index_of(address) == [(MODEL, "2", "READY"), (MODEL, "3", "UNAVAILABLE")]
        with pytest.raises(InferenceServerException) as error:
            http.load_model(MODEL, config=json.dumps({"max_batch_size": 8}))
        assert error.value.message() == "model control parameters are not supported (got config)"
        grpc_client.close()
        http.close()


def test_queued_requests_finish_on_the_version_they_were_queued_for(repo):
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    lines = []
    config = ServerConfig(repository=repo, poll_s=0.05, batching=BatchingConfig(max_delay_us=1_500_000))
    with running(Server(config, log=lines.append)) as address, ThreadPoolExecutor(1) as pool:
        queued = pool.submit(http_infer, address)  # waits 1.5 s in version 1's queue
        time.sleep(0.2)  # the request reaches the queue
        publish_version(repo, shifted(original, 10.0))
        wait_for(lambda: index_of(address) == [(MODEL, "2", "READY")], 5)
        assert not queued.done()
        assert not any("unloaded" in line for line in lines)  # version 1 still has a request queued
        status, body = queued.result(10)
        assert status == 200 and body["model_version"] == "1"
        assert_allclose(
            np.reshape(body["outputs"][0]["data"], (5, 1)),
            outputs_of(original, ROWS)["prediction"],
            rtol=1e-6,
        )
        wait_for(lambda: f"unloaded {MODEL} version 1 (its queue drained)" in lines, 5)


POLICIES = [
    "",
    DEFAULT_VERSION_POLICY,
    "version_policy: { latest: { num_versions: 3 } }",
    "version_policy { all { } }",
    "version_policy: { all: {} }",
    "version_policy: { specific: { versions: [1, 3] } }",
    "version_policy < specific { versions: 4 versions: 2 } >",
    "# a comment { with braces }\nversion_policy: {\n  latest { num_versions: 2 }  # two\n}",
]


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_reader_agrees_with_protobuf_text_format(policy):
    spec = [{"name": "features", "datatype": "FP32", "shape": [-1, 7]}]
    text = config_pbtxt(MODEL, spec, [{"name": "label", "datatype": "INT64", "shape": [-1]}], policy)
    reference = text_format.Parse(text, model_config_pb2.ModelConfig()).version_policy
    kind = reference.WhichOneof("policy_choice") or "latest"
    expected = VersionPolicy(
        kind,
        num_versions=reference.latest.num_versions if reference.HasField("latest") else 1,
        versions=tuple(sorted(reference.specific.versions)),
    )
    assert version_policy(text) == expected


@pytest.mark.parametrize(
    "policy,message",
    [
        ("version_policy: { latest: { } }", "version_policy latest needs num_versions >= 1"),
        ("version_policy: { latest { num_versions: 1 } all { } }", "exactly one of latest"),
        ("version_policy: { specific: { } }", "version_policy specific needs versions"),
        ("version_policy: { newest: { } }", "exactly one of latest"),
        ("version_policy: { latest: { num_versions: 2 }", "missing '}'"),
        ("version_policy: { latest: { count: 2 } }", "unknown fields ['count']"),
        ('name: "unterminated', "cannot read"),
    ],
)
def test_policy_reader_refuses_what_triton_would(policy, message):
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("(", r"\(")):
        version_policy(policy)


def test_a_broken_config_keeps_the_served_versions_and_says_why(repo):
    config = ServerConfig(repository=repo, poll_s=0.05)
    with running(Server(config, log=quiet)) as address:
        set_version_policy(repo, "version_policy: { latest: { } }")
        wait_for(lambda: len(index_of(address)) == 2)
        assert index_of(address) == [(MODEL, "1", "READY"), (MODEL, None, "UNAVAILABLE")]
        assert http_infer(address)[0] == 200


def test_publishing_with_kept_versions_keeps_the_operators_policy(repo):
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    set_version_policy(repo, "version_policy: { all { } }")
    publish_version(repo, shifted(original, 1.0))
    assert "version_policy: { all { } }" in (repo / MODEL / "config.pbtxt").read_text()
    assert version_policy((repo / MODEL / "config.pbtxt").read_text()) == VersionPolicy("all")
