"""Hostile input over gRPC, the counterparts of test_hostile.py: random bytes to every RPC, fuzzed
ModelInferRequests, huge claimed shapes, names that try to leave the repository. Every answer is OK or
a client's error code (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, RESOURCE_EXHAUSTED) with a message,
never INTERNAL or UNKNOWN, and a valid request still gets the right answer afterwards.

FUZZ_EXAMPLES sets the examples per property (CI: 150; `make fuzz`: 20000 and prints the count)."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve.config import ServerConfig
from serve.grpc.codec import CONTENTS
from serve.grpc.messages import METHODS, SERVICE, ModelInferRequest, ModelInferResponse
from serve.server import Server
from tests.conftest import quiet
from tests.flood import flooding
from tests.serving import free_port, proc_status, request, running, settled_fds, start_server
from tests.versions import MODEL, publish_version, shifted

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
CLIENT_CODES = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}
COUNT = {"examples": 0}
INT64 = st.integers(-(2**63), 2**63 - 1)


@pytest.fixture(scope="module")
def channel(repository):
    config = ServerConfig(repository=repository, max_body_bytes=1 << 20, max_rows=4096, poll_s=0)
    with (
        running(Server(config, log=quiet)),
        grpc.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel,
    ):
        yield channel


def call(channel, method: str, raw: bytes) -> tuple[str, bytes | str]:
    """(status code name, response bytes or error details) of one call with `raw` as the request."""
    try:
        return "OK", channel.unary_unary(f"/{SERVICE}/{method}")(raw, timeout=10)
    except grpc.RpcError as error:
        return error.code().name, error.details()


def assert_answered(code: str, answer) -> None:
    COUNT["examples"] += 1
    assert code in CLIENT_CODES, (code, answer)
    if code != "OK":
        assert answer and "Traceback" not in answer


def assert_still_right(channel, repository) -> None:
    from serve.model import Model

    rows = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    request = ModelInferRequest(model_name="zoo-multiclass")
    request.inputs.add(name="features", datatype="FP32", shape=[3, 16]).contents.fp32_contents.extend(
        rows.ravel().tolist()
    )
    code, raw = call(channel, "ModelInfer", request.SerializeToString())
    assert code == "OK"
    probabilities = ModelInferResponse.FromString(raw).outputs[1].contents.fp32_contents
    expected = Model.load(repository / "zoo-multiclass").predict(rows)["probabilities"]
    np.testing.assert_allclose(np.reshape(probabilities, (3, 7)), expected, rtol=1e-6)


@FUZZ
@given(raw=st.binary(max_size=400), method=st.sampled_from(sorted(set(METHODS) - {"RepositoryModelUnload"})))
def test_fuzz_random_bytes_to_every_rpc(channel, raw, method):
    assert_answered(*call(channel, method, raw))


CONTENT_VALUES = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "int64_contents": INT64,
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
}
DATATYPES = st.sampled_from([*CONTENTS, "FP16", "BYTES", "fp32", ""])


@st.composite
def infer_requests(draw) -> bytes:
    request = ModelInferRequest(
        model_name=draw(st.sampled_from(["zoo-mammal", "auto-mpg", "nope", "..", ""]) | st.text(max_size=8)),
        model_version=draw(st.sampled_from(["", "1", "2", "-1"]) | st.text(max_size=4)),
        id=draw(st.text(max_size=8)),
    )
    for _ in range(draw(st.integers(0, 2))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["features", "x"])),
            datatype=draw(DATATYPES),
            shape=draw(st.lists(st.sampled_from([0, 1, 7, 16, 10**18, -1]) | INT64, max_size=4)),
        )
        field = draw(st.sampled_from(sorted(CONTENT_VALUES)))
        getattr(tensor.contents, field).extend(draw(st.lists(CONTENT_VALUES[field], max_size=40)))
    for _ in range(draw(st.integers(0, 2))):
        request.raw_input_contents.append(draw(st.binary(max_size=300)))
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add(name=draw(st.sampled_from(["label", "prediction", "probabilities", ""])))
    return request.SerializeToString()


@FUZZ
@given(raw=infer_requests())
def test_fuzz_model_infer_fields(channel, raw):
    assert_answered(*call(channel, "ModelInfer", raw))


@FUZZ
@given(
    name=st.text(max_size=30)
    | st.sampled_from(["..", ".", "../../etc/passwd", "a/b", "/etc/passwd", "C:\\windows", "zoo-mammal\0"]),
    version=st.sampled_from(["", "1"]) | st.text(max_size=5),
)
def test_fuzz_model_names(channel, name, version):
    for method in ("ModelMetadata", "ModelReady"):
        request = METHODS[method][0](name=name, version=version)
        code, answer = call(channel, method, request.SerializeToString())
        assert_answered(code, answer)
        known = name in ("zoo-mammal", "auto-mpg", "zoo-multiclass") and version in ("", "1")
        if method == "ModelReady":
            assert code == "OK" and METHODS[method][1].FromString(answer).ready == known
        elif not known:
            assert code == "NOT_FOUND", (name, code)
    load = METHODS["RepositoryModelLoad"][0](model_name=name)
    code, answer = call(channel, "RepositoryModelLoad", load.SerializeToString())
    assert_answered(code, answer)
    assert code == "NOT_FOUND" or name in ("zoo-mammal", "auto-mpg", "zoo-multiclass")


@FUZZ
@given(
    field=st.sampled_from(["model_name", "model_version", "input", "datatype", "output"]),
    text=st.text(min_size=1, max_size=8).map(lambda t: t * 2500),  # up to 20,000 characters
)
def test_fuzz_long_client_strings_are_never_echoed_whole(channel, field, text):
    """Whatever field a long string arrives in, the answer is a client's error whose message repeats
    at most ~100 characters of it: a whole echo would not fit the client's metadata limit."""
    request = ModelInferRequest(model_name=text if field == "model_name" else "zoo-mammal")
    if field == "model_version":
        request.model_version = text
    tensor = request.inputs.add(
        name=text if field == "input" else "features",
        datatype=text if field == "datatype" else "FP32",
        shape=[1, 16],
    )
    tensor.contents.fp32_contents.extend([0.0] * 16)
    if field == "output":
        request.outputs.add(name=text)
    code, answer = call(channel, "ModelInfer", request.SerializeToString())
    assert_answered(code, answer)
    assert code != "OK" and len(answer) < 400, (code, len(answer))


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def test_huge_claims_are_refused_before_allocation(channel, repository):
    before = rss_mb()
    for rows in (10**9, 10**18, 2**62):
        for raw in (True, False):
            request = ModelInferRequest(model_name="zoo-mammal")
            tensor = request.inputs.add(name="features", datatype="FP32", shape=[rows, 16])
            if raw:
                request.raw_input_contents.append(b"\0" * 64)
            else:
                tensor.contents.fp32_contents.extend([0.0] * 16)
            code, message = call(channel, "ModelInfer", request.SerializeToString())
            assert (code, message) == (
                "INVALID_ARGUMENT",
                f"{rows} rows is more than the limit of 4096 per request",
            )
    assert rss_mb() - before < 20  # nothing of the claimed sizes was allocated
    assert_still_right(channel, repository)


def test_fuzz_count_is_reported(channel, repository):
    assert_still_right(channel, repository)  # after all the fuzzing, still right
    print(
        f"\ngrpc fuzz: {COUNT['examples']} calls answered OK or a client's error "
        f"({EXAMPLES} examples per property)"
    )
    assert COUNT["examples"] >= EXAMPLES


# -- connections (issue 18) ---------------------------------------------------------------------------------
def infer_call(channel) -> float:
    """One ModelInfer of zoo-multiclass on `channel`; its seconds (fails unless answered OK)."""
    request = ModelInferRequest(model_name="zoo-multiclass")
    request.inputs.add(name="features", datatype="FP32", shape=[1, 16]).contents.fp32_contents.extend(
        [0.0] * 16
    )
    start = time.monotonic()
    channel.unary_unary(f"/{SERVICE}/ModelInfer")(request.SerializeToString(), timeout=5)
    return time.monotonic() - start


def http_seconds(port: int, path: str) -> tuple[int, float]:
    start = time.monotonic()
    status, _, _ = request(f"127.0.0.1:{port}", "GET", path)
    return status, time.monotonic() - start


@contextlib.contextmanager
def descriptors_of(pid: int):
    """The open file descriptors of process `pid`, sampled every 20 ms while the block runs."""
    seen, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            seen.append(proc_status(pid)[1])
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()


def test_a_connection_flood_leaves_http_the_poll_and_open_channels_working(repository, tmp_path):
    """600 idle connections (silent, preface only, idle channels) to the gRPC port of a server that may
    open 300 file descriptors. Without a cap it runs out (EMFILE): HTTP health, the poll and gRPC calls
    all fail. With it, the gRPC port holds (300 - 128) / 2 = 86 connections and closes the others at once;
    those that never finish the HTTP/2 handshake are closed after --header-timeout-s (1 s), idle channels
    after --idle-timeout-s (8 s). Meanwhile HTTP health, /metrics, a gRPC channel opened before the flood
    and the repository poll all work."""
    models = tmp_path / "models"
    for name in ("auto-mpg", "zoo-multiclass"):
        shutil.copytree(repository / name, models / name)
    grpc_port = free_port()
    flags = ["--grpc-port", str(grpc_port), "--poll-s", "0.2", "--header-timeout-s", "1"]
    flags += ["--idle-timeout-s", "8"]
    lines = []
    process, port = start_server(models, *flags, nofile=300, lines=lines)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            infer_call(channel)
            base = settled_fds(process.pid)
            with flooding(grpc_port, 600) as flood, descriptors_of(process.pid) as seen:
                started = time.monotonic()
                time.sleep(1.0)  # the server accepts what it will
                status, seconds = http_seconds(port, "/v2/health/ready")
                assert status == 200 and seconds < 1.0
                assert infer_call(channel) < 1.0
                assert http_seconds(port, "/metrics")[0] == 200
                while time.monotonic() < started + 1 + 2.5:  # the handshake timeout and a margin
                    infer_call(channel)  # a call at least every idle timeout keeps the channel open
                    time.sleep(0.2)
                unfinished = flood.total("held silent") + flood.total("held preface")
                assert unfinished == 0, f"handshakes never finished, still open: {flood.latest}"
                publish_version(models, shifted((models / MODEL / "1" / "model.onnx").read_bytes(), 10.0))
                deadline = time.monotonic() + 10
                while not any("serving auto-mpg version(s) 2" in line for line in lines):
                    assert time.monotonic() < deadline, f"the poll did not see version 2: {lines[-5:]}"
                    infer_call(channel)
                    time.sleep(0.2)
                deadline = started + 8 + 6  # the idle timeout and a margin
                while flood.total("closed_by_server") + flood.total("failed") < 600:
                    assert time.monotonic() < deadline, f"the server keeps connections open: {flood.latest}"
                    infer_call(channel)
                    time.sleep(0.2)
            held = max(seen) - base
            assert held <= 86 + 4, f"the server held {held} more descriptors under the flood"
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            assert infer_call(channel) < 1.0  # a new client connects once the flood is gone
        assert settled_fds(process.pid) <= base + 2
    finally:
        process.terminate()
        process.wait(10)
