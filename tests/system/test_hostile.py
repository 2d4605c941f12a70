"""Hostile and malformed input: property-based fuzzing of request decoding, huge claims, paths that try
to leave the model repository, slow and oversized clients. Every answer is 2xx or 4xx with
{"error": ...}, nothing escapes, and a valid request still gets the right answer afterwards.

FUZZ_EXAMPLES sets the examples per property (CI: 150; `make fuzz`: 20000 and prints the count)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve.batching import BatchingConfig
from serve.config import ServerConfig
from serve.dataplane import DataPlane
from serve.http.app import App
from serve.model import Model
from serve.server import Server
from tests.conftest import quiet
from tests.serving import json_request, running

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


class InProcess:
    """The whole ASGI request path without sockets: route, limits, decode, batch, run, encode."""

    def __init__(self, repository):
        config = ServerConfig(
            repository=repository,
            max_body_bytes=1 << 20,
            max_rows=4096,
            batching=BatchingConfig(max_delay_us=0),
        )
        dataplane = DataPlane(config, log=quiet)
        dataplane.load()
        self.app = App(dataplane)
        self.loop = asyncio.new_event_loop()

    def call(self, method: str, path: bytes, body: bytes = b"", headers=()) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "method": method,
            "path": path.decode("latin-1"),
            "raw_path": path,
            "headers": [(k.lower(), v) for k, v in headers],
            "query_string": b"",
        }
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        self.loop.run_until_complete(self.app(scope, receive, send))
        return sent[0]["status"], sent[1]["body"]


@pytest.fixture(scope="module")
def target(repository):
    return InProcess(repository)


def assert_answered(status: int, body: bytes) -> None:
    assert 200 <= status < 300 or 400 <= status < 500, (status, body[:300])
    if status >= 400:
        error = json.loads(body)
        assert (
            set(error) == {"error"} and isinstance(error["error"], str) and "Traceback" not in error["error"]
        )


def assert_still_right(target, repository) -> None:
    rows = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    request = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [3, 16], "data": rows.tolist()}]}
    status, body = target.call("POST", b"/v2/models/zoo-multiclass/infer", json.dumps(request).encode())
    assert status == 200
    probabilities = json.loads(body)["outputs"][1]["data"]
    expected = Model.load(repository / "zoo-multiclass").predict(rows)["probabilities"]
    np.testing.assert_allclose(np.reshape(probabilities, (3, 7)), expected, rtol=1e-6)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
SHAPES = st.lists(
    st.one_of(st.integers(-3, 20), st.just(10**18), st.just(2**63 - 1), st.integers()), max_size=12
)
DATATYPES = st.sampled_from(["FP32", "FP64", "FP16", "INT64", "INT32", "UINT8", "BOOL", "BYTES", "fp32", ""])


def tensor(draw_name, datatype, shape, data):
    return {"name": draw_name, "datatype": datatype, "shape": shape, "data": data}


@FUZZ
@given(body=JSON_VALUES)
def test_fuzz_arbitrary_json_bodies(target, body):
    for path in (b"/v2/models/zoo-mammal/infer", b"/v1/models/zoo-mammal:predict"):
        assert_answered(*target.call("POST", path, json.dumps(body).encode()))


@FUZZ
@given(
    name=st.sampled_from(["features", "x", ""]) | st.text(max_size=5),
    datatype=DATATYPES,
    shape=SHAPES,
    data=JSON_VALUES | st.lists(st.floats() | st.integers() | st.none(), max_size=40),
    extra=st.dictionaries(
        st.sampled_from(["id", "outputs", "parameters", "inputs"]), JSON_VALUES, max_size=2
    ),
    duplicate=st.booleans(),
)
def test_fuzz_v2_json_fields(target, name, datatype, shape, data, extra, duplicate):
    inputs = [tensor(name, datatype, shape, data)] * (2 if duplicate else 1)
    body = json.dumps({"inputs": inputs, **extra}).encode()
    assert_answered(*target.call("POST", b"/v2/models/zoo-multiclass/infer", body))


@FUZZ
@given(
    datatype=DATATYPES,
    shape=SHAPES,
    size=st.integers(-5, 2000) | st.just(10**18) | st.none(),
    header_length=st.integers(-10, 3000) | st.just(10**30) | st.text(max_size=4) | st.none(),
    payload=st.binary(max_size=300),
)
def test_fuzz_v2_binary(target, datatype, shape, size, header_length, payload):
    parameters = {} if size is None else {"binary_data_size": size}
    header = json.dumps(
        {"inputs": [{"name": "features", "datatype": datatype, "shape": shape, "parameters": parameters}]}
    ).encode()
    claimed = str(len(header)) if header_length is None else str(header_length)
    headers = [(b"inference-header-content-length", claimed.encode("utf-8", "replace"))]
    assert_answered(*target.call("POST", b"/v2/models/zoo-multiclass/infer", header + payload, headers))


@FUZZ
@given(raw=st.binary(max_size=400), header_length=st.none() | st.integers(-1, 500))
def test_fuzz_random_bytes(target, raw, header_length):
    headers = (
        [] if header_length is None else [(b"inference-header-content-length", str(header_length).encode())]
    )
    for path in (b"/v2/models/auto-mpg/infer", b"/v1/models/auto-mpg:predict", b"/v2/repository/index"):
        assert_answered(*target.call("POST", path, raw, headers))


@FUZZ
@given(
    instances=st.lists(
        st.dictionaries(
            st.sampled_from(["cylinders", "origin", "weight", "wings", ""]), JSON_VALUES, max_size=4
        )
        | JSON_VALUES,
        max_size=4,
    )
)
def test_fuzz_v1_instances(target, instances):
    assert_answered(
        *target.call("POST", b"/v1/models/auto-mpg:predict", json.dumps({"instances": instances}).encode())
    )


@FUZZ
@given(
    segment=st.text(max_size=30)
    | st.sampled_from(
        ["..", ".", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%00", "a%2Fb", "%2Fetc%2Fpasswd", "C:%5Cwindows"]
    ),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
def test_fuzz_model_names_in_urls(target, segment, method):
    quoted = segment.encode("utf-8", "surrogatepass").replace(b"/", b"%2F").replace(b"?", b"%3F")
    for template in (
        b"/v2/models/%s/infer",
        b"/v2/models/%s",
        b"/v2/models/zoo-mammal/versions/%s/ready",
        b"/v1/models/%s:predict",
    ):
        status, body = target.call(method, template % quoted, b"{}")
        assert_answered(status, body)
        if segment not in ("zoo-mammal", "auto-mpg", "zoo-multiclass", "1"):
            assert status in (400, 404, 405), (segment, status)


def test_deep_nesting_and_duplicate_inputs(target, repository):
    deep = "[" * 100_000 + "]" * 100_000
    body = ('{"inputs":[{"name":"features","datatype":"FP32","shape":[1,16],"data":' + deep + "}]}").encode()
    assert_answered(*target.call("POST", b"/v2/models/zoo-mammal/infer", body))
    row = {"name": "features", "datatype": "FP32", "shape": [1, 16], "data": [0] * 16}
    status, body = target.call(
        "POST", b"/v2/models/zoo-mammal/infer", json.dumps({"inputs": [row, row]}).encode()
    )
    assert (status, json.loads(body)) == (400, {"error": "input 'features' is given twice"})
    status, body = target.call("POST", b"/v2/models/zoo-mammal/infer", b"\xff\xfe{\x80")
    assert status == 400 and json.loads(body)["error"].startswith("body is not valid JSON")
    assert_still_right(target, repository)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def test_huge_claims_are_refused_before_allocation(target, repository):
    before = rss_mb()
    for rows in (10**9, 10**18, 2**62):
        for parameters in ({}, {"binary_data_size": rows * 64}):
            request = {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP32",
                        "shape": [rows, 16],
                        "parameters": parameters,
                        "data": [0.0],
                    }
                ]
            }
            status, body = target.call("POST", b"/v2/models/zoo-mammal/infer", json.dumps(request).encode())
            assert status == 400 and b"limit" in body
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP32",
                        "shape": [1, 16],
                        "parameters": {"binary_data_size": 64},
                    }
                ]
            }
        ).encode()
        status, body = target.call(
            "POST",
            b"/v2/models/zoo-mammal/infer",
            header,
            [(b"inference-header-content-length", str(rows).encode())],
        )
        assert status == 400 and b"does not fit" in body
        status, body = target.call(
            "POST", b"/v2/models/zoo-mammal/infer", b"x", [(b"content-length", str(rows).encode())]
        )
        assert status == 413
    assert rss_mb() - before < 20  # nothing of the claimed sizes was allocated
    assert_still_right(target, repository)


def test_fuzz_count_is_reported(target, repository):
    """The FUZZ settings really run EXAMPLES examples per property (one that quietly ran fewer would
    still pass): a property run and counted here, on its own, so test order does not matter."""
    answered = []

    @FUZZ
    @given(raw=st.binary(max_size=400))
    def random_body(raw):
        status, body = target.call("POST", b"/v2/models/zoo-mammal/infer", raw)
        assert_answered(status, body)
        answered.append(status)

    random_body()
    assert_still_right(target, repository)  # after all the fuzzing, still right
    print(
        f"\nfuzz: {len(answered)} random bodies answered 2xx/4xx with a JSON error body "
        f"({EXAMPLES} examples per property)"
    )
    assert len(answered) >= EXAMPLES


# -- slow and oversized clients, on a real socket ---------------------------------------------------------
@pytest.fixture(scope="module")
def strict_server(repository):
    config = ServerConfig(
        repository=repository,
        idle_timeout_s=0.5,
        header_timeout_s=0.5,
        body_timeout_s=0.5,
        max_header_bytes=4096,
    )
    with running(Server(config, log=quiet)) as address:
        yield address


def connect(address: str) -> socket.socket:
    host, port = address.split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_silent_connection_is_closed_without_blocking_others(strict_server):
    silent = connect(strict_server)
    start = time.monotonic()
    assert json_request(strict_server, "GET", "/v2/health/live") == (200, {"live": True})  # served meanwhile
    assert read_all(silent) == b"" and time.monotonic() - start < 3  # closed by the server, not hanging


def test_headers_dripping_slower_than_the_timeout_get_408(strict_server):
    sock = connect(strict_server)
    for byte in b"GET /v2/health/l":  # a byte every 20 ms: the line is still unfinished at 0.5 s
        sock.send(bytes([byte]))
        time.sleep(0.02)
    time.sleep(0.8)
    reply = read_all(sock)
    assert (
        reply.startswith(b"HTTP/1.1 408") and b'{"error":"request headers not received within 0.5s"}' in reply
    )


def test_stalled_body_gets_408_and_others_are_served(strict_server):
    sock = connect(strict_server)
    sock.send(b'POST /v2/models/zoo-mammal/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"inp')
    assert json_request(strict_server, "GET", "/v2/health/ready") == (200, {"ready": True})
    reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408") and b"request body not received within 0.5s" in reply


def test_oversized_headers_get_431_and_malformed_http_400(strict_server):
    sock = connect(strict_server)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")
    reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 431") and b'"error":"request headers over 4096 bytes"' in reply
    sock = connect(strict_server)
    sock.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 400") and b'"error":"malformed HTTP request' in reply
    assert json_request(strict_server, "GET", "/v2/health/live") == (200, {"live": True})
