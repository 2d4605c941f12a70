"""Payload logs (serve/payloads.py): sampled requests and their responses as CloudEvent pairs in JSON
lines, over HTTP (V2, V1) and gRPC, rotated by size, and written off the request path: a full or slow
disk drops entries (counted in /metrics), never a request."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from numpy.testing import assert_array_equal

import serve.payloads
from serve.config import ServerConfig
from serve.payloads import REQUEST_TYPE, RESPONSE_TYPE, PayloadLogConfig
from serve.server import Server
from tests.conftest import quiet
from tests.serving import json_request, request, running

MODEL = "zoo-multiclass"
ROW = [1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 4, 0, 0, 1]
BODY = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": ROW}]})


def server_logging(repository: Path, **payload_log) -> Server:
    return Server(
        ServerConfig(repository=repository, poll_s=0, payload_log=PayloadLogConfig(**payload_log)), log=quiet
    )


def metric(address: str, name: str) -> float:
    text = request(address, "GET", "/metrics")[2].decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def written(address: str) -> float:
    return metric(address, "payload_log_written_total")


def dropped(address: str, reason: str) -> float:
    return metric(address, f'payload_log_dropped_total{{reason="{reason}"}}')


def settled(address: str, total: int | None = None, timeout: float = 20.0) -> tuple[float, float, float]:
    """(written, dropped queue_full, dropped write_error) once they add up to `total` (None: once they
    hold still for half a second)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        now = (written(address), dropped(address, "queue_full"), dropped(address, "write_error"))
        if (total is not None and sum(now) == total) or (total is None and now == last):
            return now
        last = now
        time.sleep(0.5 if total is None else 0.02)
    raise AssertionError(f"payload log counters did not settle: {now}")


def infer_many(address: str, n: int) -> list[float]:
    """`n` 1-row V2 requests one after another on one connection; each one's seconds (all answered 200)."""
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        connection.request("POST", f"/v2/models/{MODEL}/infer", body=BODY)
        response = connection.getresponse()
        response.read()
        seconds.append(time.perf_counter() - start)
        assert response.status == 200
    connection.close()
    return seconds


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pairs(events: list[dict]) -> dict[str, dict[str, dict]]:
    """id → {"request": event, "response": event}."""
    by_id: dict[str, dict[str, dict]] = {}
    for event in events:
        kind = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}[event["type"]]
        assert kind not in by_id.setdefault(event["id"], {}), f"two {kind}s with id {event['id']}"
        by_id[event["id"]][kind] = event
    return by_id


def as_floats(data: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in data], np.float32)


def test_http_and_grpc_requests_are_logged_as_request_response_pairs(repository, tmp_path):
    path = tmp_path / "payloads.jsonl"
    server = server_logging(repository, path=path)
    features = np.array([ROW, ROW], np.float32)
    features[1, 12] = np.nan  # a missing value is logged as null
    with running(server) as address:
        grpc_address = f"127.0.0.1:{server.config.grpc_port}"
        with triton_http.InferenceServerClient(address) as client:
            tensor = triton_http.InferInput("features", [2, 16], "FP32")
            tensor.set_data_from_numpy(features)
            over_http = client.infer(MODEL, [tensor], request_id="over-http")
        with triton_grpc.InferenceServerClient(grpc_address) as client:
            tensor = triton_grpc.InferInput("features", [2, 16], "FP32")
            tensor.set_data_from_numpy(features)
            wanted = [triton_grpc.InferRequestedOutput("label")]
            over_grpc = client.infer(MODEL, [tensor], request_id="over-grpc", outputs=wanted)
        v1 = json_request(address, "POST", "/v1/models/auto-mpg:predict", {"instances": [{"cylinders": 4}]})
        assert v1[0] == 200
        assert settled(address, total=3) == (3, 0, 0)
        logged = pairs(read_events(path))

    assert len(logged) == 3
    by_endpoint = {pair["request"]["endpoint"]: pair for pair in logged.values()}
    assert sorted(by_endpoint) == ["grpc_infer", "v1_predict", "v2_infer"]
    for endpoint, answer, client_id, outputs in (
        ("v2_infer", over_http, "over-http", ["logits", "probabilities", "label"]),
        ("grpc_infer", over_grpc, "over-grpc", ["label"]),
    ):
        pair = by_endpoint[endpoint]
        for kind, event in pair.items():
            assert event["specversion"] == "1.0"
            assert event["type"] == {"request": REQUEST_TYPE, "response": RESPONSE_TYPE}[kind]
            assert event["datacontenttype"] == "application/json"
            assert (event["inferenceservicename"], event["modelversion"]) == (MODEL, "1")
            scheme, port = (
                ("grpc", server.config.grpc_port)
                if endpoint == "grpc_infer"
                else ("http", server.config.port)
            )
            assert event["source"] == f"{scheme}://127.0.0.1:{port}/"
            assert event["data"]["id"] == client_id
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["time"])
        assert pair["request"]["id"] == pair["response"]["id"]
        (sent,) = pair["request"]["data"]["inputs"]
        assert (sent["name"], sent["datatype"], sent["shape"]) == ("features", "FP32", [2, 16])
        assert_array_equal(as_floats(sent["data"]).reshape(2, 16), features)  # NaN where null
        response = pair["response"]["data"]
        assert (response["model_name"], response["model_version"]) == (MODEL, "1")
        assert [o["name"] for o in response["outputs"]] == outputs
        for output in response["outputs"]:
            expected = answer.as_numpy(output["name"])
            assert output["shape"] == list(expected.shape)
            assert output["datatype"] == {"label": "INT64"}.get(output["name"], "FP32")
            assert_array_equal(np.array(output["data"], expected.dtype).reshape(expected.shape), expected)
    v1_pair = by_endpoint["v1_predict"]
    assert v1_pair["request"]["inferenceservicename"] == "auto-mpg"
    assert v1_pair["request"]["data"]["inputs"][0]["data"][0] == 4.0  # cylinders, the rest missing
    prediction = v1[1]["predictions"][0]["mpg"]
    assert v1_pair["response"]["data"]["outputs"][0]["data"] == [pytest.approx(prediction, rel=1e-6)]


def test_a_sample_of_0_logs_nothing_and_a_share_logs_about_that_share(repository, tmp_path):
    nothing = tmp_path / "nothing.jsonl"
    with running(server_logging(repository, path=nothing, sample=0.0)) as address:
        infer_many(address, 100)
        assert settled(address) == (0, 0, 0)
    assert nothing.read_text() == ""
    share = tmp_path / "share.jsonl"
    with running(server_logging(repository, path=share, sample=0.25)) as address:
        infer_many(address, 400)
        count, *drops = settled(address)
    assert drops == [0, 0]
    assert 60 <= count <= 140  # 100 expected; 4.6 standard deviations either side
    assert len(pairs(read_events(share))) == count


def test_the_log_rotates_by_size_and_keeps_its_backups(repository, tmp_path):
    path = tmp_path / "payloads.jsonl"
    with running(server_logging(repository, path=path, max_bytes=4096, backups=2)) as address:
        infer_many(address, 60)
        assert settled(address, total=60)[0] == 60
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["payloads.jsonl", "payloads.jsonl.1", "payloads.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 4096
        logged = pairs(read_events(tmp_path / name))  # a pair is never split between two files
        assert logged and all(sorted(pair) == ["request", "response"] for pair in logged.values())


def test_a_full_disk_fails_no_request_and_counts_the_drops(repository):
    server = server_logging(repository, path=Path("/dev/full"))
    with running(server) as address:
        infer_many(address, 50)
        with triton_grpc.InferenceServerClient(f"127.0.0.1:{server.config.grpc_port}") as client:
            tensor = triton_grpc.InferInput("features", [1, 16], "FP32")
            tensor.set_data_from_numpy(np.array([ROW], np.float32))
            for _ in range(50):
                client.infer(MODEL, [tensor])
        assert settled(address, total=100) == (0, 0, 100)
        _, _, body = request(address, "GET", f"/v2/models/{MODEL}/stats")
        assert json.loads(body)["model_stats"][0]["inference_stats"]["fail"]["count"] == 0


@contextlib.contextmanager
def tiny_disk(directory: Path, size: str = "64k"):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)])
    if mounted.returncode != 0:
        pytest.skip("this machine does not let a tmpfs be mounted")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def test_a_disk_that_fills_up_keeps_answering_and_counts_what_it_could_not_write(repository, tmp_path):
    with tiny_disk(tmp_path / "disk") as disk:
        path = disk / "payloads.jsonl"
        with running(server_logging(repository, path=path, max_bytes=1024 * 1024, backups=1)) as address:
            infer_many(address, 200)  # about 1.3 kB each: 64 kB hold about 45
            logged, queue_full, write_errors = settled(address, total=200)
        assert queue_full == 0 and logged > 0 and write_errors > 0
        assert len(pairs(read_events(path))) == logged


def test_a_slow_writer_delays_no_request_and_drops_what_does_not_fit_its_queue(
    repository, tmp_path, monkeypatch
):
    original = serve.payloads.RotatingFile.write

    def slow(self, data):
        time.sleep(0.2)  # a disk that takes 200 ms a write
        return original(self, data)

    monkeypatch.setattr(serve.payloads.RotatingFile, "write", slow)
    server = server_logging(repository, path=tmp_path / "payloads.jsonl", queue=8)
    with running(server) as address:
        queued, done = [], threading.Event()

        def watch():  # how many entries wait for the writer, all along
            while not done.wait(0.001):
                queued.append(len(server.dataplane.payloads.pending))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            seconds = infer_many(address, 100)
        finally:
            done.set()
            watcher.join()
        assert max(seconds) < 0.15, f"a request waited {max(seconds):.3f}s for the payload log"
        assert max(queued) <= 8
        logged, queue_full, write_errors = settled(address, total=100)
    assert queue_full >= 50 and write_errors == 0
    assert len(pairs(read_events(tmp_path / "payloads.jsonl"))) == logged
