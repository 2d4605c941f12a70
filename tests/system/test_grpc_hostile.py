"""Hostile input over gRPC, the counterparts of test_hostile.py: random bytes to every RPC, fuzzed
ModelInferRequests, huge claimed shapes, names that try to leave the repository. Every answer is OK or
a client's error code (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, RESOURCE_EXHAUSTED) with a message,
never INTERNAL or UNKNOWN, and a valid request still gets the right answer afterwards.

FUZZ_EXAMPLES sets the examples per property (CI: 150; `make fuzz`: 20000 and prints the count)."""

from __future__ import annotations

import os
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
from tests.serving import running

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
