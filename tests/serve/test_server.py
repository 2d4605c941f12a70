"""The composition root (serve/server.py): one data plane behind HTTP and gRPC, the two started together
and stopped together, and a server process that imports neither the training side nor pyarrow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as triton_grpc

from serve.batching import BatchingConfig
from serve.config import ServerConfig
from serve.server import Server
from tests.conftest import ROOT, quiet
from tests.serving import json_request, running


def accepts(address: str) -> bool:
    host, port = address.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def test_stop_closes_both_ports_at_once_and_requests_in_flight_finish(repository):
    """What SIGTERM does: HTTP and gRPC stop accepting at the same moment, not one after the other has
    drained, and a request waiting in the batching queue on each (for 1.5 s) is still answered."""
    config = ServerConfig(repository=repository, batching=BatchingConfig(max_delay_us=1_500_000))
    server = Server(config, log=quiet)
    rows = np.zeros((1, 16), np.float32)
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": rows.tolist()}]}

    def over_grpc(address):
        with triton_grpc.InferenceServerClient(address) as client:
            features = triton_grpc.InferInput("features", [1, 16], "FP32")
            features.set_data_from_numpy(rows)
            return client.infer("zoo-mammal", [features]).as_numpy("label")

    with running(server) as address, ThreadPoolExecutor(2) as pool:
        grpc_address = f"127.0.0.1:{config.grpc_port}"
        assert accepts(address) and accepts(grpc_address)
        over_http = pool.submit(json_request, address, "POST", "/v2/models/zoo-mammal/infer", body)
        grpc_label = pool.submit(over_grpc, grpc_address)
        deadline = time.monotonic() + 5
        while server.dataplane.repository.queued("zoo-mammal") < 2:
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.01)
        server.exit()
        deadline = time.monotonic() + 1
        while accepts(address) or accepts(grpc_address):
            assert time.monotonic() < deadline, "a port still accepts"
            time.sleep(0.02)
        assert not over_http.done() and not grpc_label.done()  # both closed while both requests wait
        status, answer = over_http.result(10)
        assert status == 200 and answer["model_name"] == "zoo-mammal"
        assert grpc_label.result(10).tolist() == [answer["outputs"][2]["data"][0]]


SERVE_BOTH = """
import json, socket, sys, threading, time, urllib.request
import grpc, numpy as np
import serve.__main__
from serve.config import ServerConfig
from serve.grpc.messages import SERVICE, ModelInferRequest, ModelInferResponse
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
pyarrow = sorted(m for m in sys.modules if m.split(".")[0] == "pyarrow")
from serve.predict import predict_table  # batch prediction stays torch-free too
training_side = ("torch", "onnx", "onnxscript", "pipeline", "export", "tritonclient")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in training_side)
print(json.dumps({"answer": json.loads(answer), "label": label, "pyarrow": pyarrow, "leaked": leaked}))
server.exit()
thread.join(10)  # shut down cleanly: a daemon thread inside onnxruntime at interpreter exit can crash it
"""


def test_serving_imports_neither_torch_nor_pyarrow(repository):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_BOTH, str(repository)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["leaked"] == [] and report["pyarrow"] == []
    assert report["answer"]["predictions"][0]["label"] in ("mammal", "other")
    assert report["label"] in ([0], [1])  # answered over gRPC too
