"""Warm before ready (serve/warmup.py): every loaded version runs each batch size the batcher will use
before the server is ready or the version is swapped in, and a version whose warm-up fails is refused
with the reason while the one before serves on."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import serve.repository
from serve.config import ServerConfig
from serve.model import Model
from serve.server import Server
from serve.warmup import batch_sizes
from tests.conftest import quiet
from tests.serving import json_request, running
from tests.versions import MODEL, publish_version, shifted

POWERS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@pytest.fixture
def repo(repository, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(repository, copy)
    return copy


@pytest.fixture
def runs(monkeypatch):
    """Every onnxruntime call through serve's Model: (model name, version, rows), in order."""
    calls, original = [], Model.run

    def counted(self, features, outputs=None):
        calls.append((self.name, self.version, len(features)))
        return original(self, features, outputs)

    monkeypatch.setattr(Model, "run", counted)
    return calls


def index_of(address: str) -> list[tuple]:
    rows = json_request(address, "POST", "/v2/repository/index", {})[1]
    return [(r["name"], r.get("version"), r["state"]) for r in rows]


def infer_version(address: str) -> str:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 7], "data": [[4] * 7]}]}
    status, answer = json_request(address, "POST", f"/v2/models/{MODEL}/infer", body)
    assert status == 200, answer
    return answer["model_version"]


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_batch_sizes_are_the_powers_of_two_up_to_the_largest_batch():
    assert batch_sizes(1024) == POWERS
    assert batch_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert batch_sizes(1) == (1,)


def test_every_version_runs_every_batch_size_before_the_server_is_ready(repository, runs):
    lines = []
    server = Server(ServerConfig(repository=repository, poll_s=0), log=lines.append)
    with running(server) as address:
        assert json_request(address, "GET", "/v2/health/ready") == (200, {"ready": True})
        names = sorted(server.dataplane.repository.models)
        assert len(names) == 3
        # before any request: each model's session ran each size once, and nothing else ran
        assert sorted(runs) == sorted((name, "1", rows) for name in names for rows in POWERS)
        for name in names:
            assert any(
                line.startswith(f"warmed {name} version 1: 11 batch sizes, 1 to 1024 rows") for line in lines
            )
            stats = json_request(address, "GET", f"/v2/models/{name}/stats")[1]["model_stats"][0]
            assert stats["execution_count"] == 0  # warm-up is not inference: Triton's statistics skip it


def test_no_warmup_runs_nothing_before_a_request(repository, runs):
    with running(Server(ServerConfig(repository=repository, poll_s=0, warmup=False), log=quiet)) as address:
        assert json_request(address, "GET", "/v2/health/ready") == (200, {"ready": True})
        assert runs == []


def test_a_new_version_is_swapped_in_only_once_it_is_warm(repo, runs, monkeypatch):
    started, release = threading.Event(), threading.Event()
    warm_up = serve.repository.warm_up

    def held(model, max_batch_rows):
        if model.version == "2":
            started.set()
            assert release.wait(20)
        return warm_up(model, max_batch_rows)

    monkeypatch.setattr(serve.repository, "warm_up", held)
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    with running(Server(ServerConfig(repository=repo, poll_s=0.05), log=quiet)) as address:
        publish_version(repo, shifted(original, 10.0))
        assert started.wait(20)
        # version 2 is loaded and warming: not in the index, not answering; version 1 serves, ready
        assert (MODEL, "1", "READY") in index_of(address)
        assert (MODEL, "2", "READY") not in index_of(address)
        assert infer_version(address) == "1"
        assert json_request(address, "GET", "/v2/health/ready") == (200, {"ready": True})
        release.set()
        wait_for(lambda: (MODEL, "2", "READY") in index_of(address))
        assert infer_version(address) == "2"
        version_2 = [rows for name, version, rows in runs if (name, version) == (MODEL, "2")]
        assert version_2[: len(POWERS)] == list(POWERS)  # warmed first, then the request's row


def batch_of_one_only(onnx_bytes: bytes) -> bytes:
    """The same graph, but its prediction added to zeros of shape [rows², 1]: it runs at 1 row and fails
    at more (as a graph with a batch fixed inside would), while its declared inputs and outputs are
    unchanged."""
    model = onnx.load_from_string(onnx_bytes)
    for node in model.graph.node:
        node.output[:] = ["prediction_any_batch" if o == "prediction" else o for o in node.output]
    for name, value in (("zero", [0]), ("one", [1])):
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
    model.graph.node.extend(
        [
            helper.make_node("Shape", ["features"], ["input_shape"]),
            helper.make_node("Slice", ["input_shape", "zero", "one"], ["rows"]),
            helper.make_node("Mul", ["rows", "rows"], ["rows_squared"]),
            helper.make_node("Concat", ["rows_squared", "one"], ["squared_shape"], axis=0),
            helper.make_node(
                "ConstantOfShape",
                ["squared_shape"],
                ["zeros"],
                value=helper.make_tensor("zero_float", onnx.TensorProto.FLOAT, [1], [0.0]),
            ),
            helper.make_node("Add", ["prediction_any_batch", "zeros"], ["prediction"]),
        ]
    )
    return model.SerializeToString()


def test_a_version_whose_warm_up_fails_is_refused_with_the_reason(repo):
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    lines = []
    with running(Server(ServerConfig(repository=repo, poll_s=0.05), log=lines.append)) as address:
        publish_version(repo, batch_of_one_only(original))
        wait_for(lambda: (MODEL, "2", "UNAVAILABLE") in index_of(address))
        rows = json_request(address, "POST", "/v2/repository/index", {})[1]
        reason = next(r["reason"] for r in rows if r.get("version") == "2")
        assert reason.startswith("warm-up failed at 2 rows: "), reason
        assert (MODEL, "1", "READY") in index_of(address)
        assert infer_version(address) == "1"
        assert json_request(address, "GET", "/v2/health/ready") == (200, {"ready": True})
        assert any(line.startswith(f"refused {MODEL} version 2: warm-up failed at 2 rows") for line in lines)
