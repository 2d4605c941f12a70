"""`--workers 2` for real: two processes answer on one HTTP port and one gRPC port, /metrics adds up
both, a published version and an explicit unload reach both, SIGTERM drains both and exits 0.

Which worker holds a connection is read from the kernel (/proc/net/tcp and each worker's open sockets)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests.conftest import ROOT
from tests.serving import free_port
from tests.versions import MODEL, car_rows, outputs_of, publish_version, shifted

ROWS = car_rows(3, seed=7)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def owner_of(connection: http.client.HTTPConnection, port: int, workers: list[int]) -> int:
    """The worker process holding the server side of `connection`."""
    client_port = connection.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[2].endswith(f":{client_port:04X}"):
            inode = fields[9]
    assert inode, "no server socket for the connection"
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds socket {inode}")


def infer_on_fresh_connections(
    port: int, workers: list[int], count: int
) -> list[tuple[int, str, np.ndarray]]:
    """(worker, model_version, prediction) of one request on each of `count` new connections."""
    body = json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [3, 7], "data": ROWS.tolist()}]}
    )
    answers = []
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", f"/v2/models/{MODEL}/infer", body)
        response = connection.getresponse()
        data = json.loads(response.read())
        assert response.status == 200, data
        worker = owner_of(connection, port, workers)
        answers.append((worker, data["model_version"], np.reshape(data["outputs"][0]["data"], (3, 1))))
        connection.close()
    return answers


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=b"" if method == "POST" else None)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


@pytest.fixture
def workers(repository, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(repository / MODEL, repo / MODEL)
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serve", "serve", "--repository", str(repo), "--port", str(port)]
    command += ["--grpc-port", str(grpc_port), "--workers", "2", "--poll-s", "0.1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(("ready", "NOT ready", "error")):
            break
    try:
        assert lines[-1] == "ready: 2 workers\n", lines
        pids = children(process.pid)
        assert len(pids) == 2
        yield repo, process, port, grpc_port, pids
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in children(process.pid):
            os.kill(pid, signal.SIGKILL)


def test_workers_share_the_ports_metrics_updates_and_shutdown(workers):
    repo, process, port, grpc_port, pids = workers
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    answers = infer_on_fresh_connections(port, pids, 24)
    assert {worker for worker, _, _ in answers} == set(pids)  # the kernel spread the connections
    for _, version, prediction in answers:
        assert version == "1" and np.allclose(prediction, outputs_of(original, ROWS)["prediction"], rtol=1e-6)

    with triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
        features = triton_grpc.InferInput("features", [3, 7], "FP32")
        features.set_data_from_numpy(ROWS)
        assert np.array_equal(
            client.infer(MODEL, [features]).as_numpy("prediction"), outputs_of(original, ROWS)["prediction"]
        )

    status, text = get(port, "/metrics")
    assert status == 200
    assert (
        f'inference_requests_total{{endpoint="v2_infer",model="{MODEL}",status="200"}} 24.0' in text.decode()
    )
    assert (
        f'inference_requests_total{{endpoint="grpc_infer",model="{MODEL}",status="200"}} 1.0' in text.decode()
    )
    assert "server_ready 1.0" in text.decode()
    assert f'inference_queue_requests{{model="{MODEL}"}} 0.0' in text.decode()  # both workers' queues, empty

    publish_version(repo, shifted(original, 10.0))  # each worker's own poll picks it up
    deadline = time.monotonic() + 15
    while True:
        answers = infer_on_fresh_connections(port, pids, 12)
        if all(version == "2" for _, version, _ in answers) and len({w for w, _, _ in answers}) == 2:
            break
        assert time.monotonic() < deadline, [(w, v) for w, v, _ in answers]
        time.sleep(0.1)
    for _, _, prediction in answers:
        assert np.allclose(prediction, outputs_of(original, ROWS)["prediction"] + 10, rtol=1e-6)

    assert get(port, f"/v2/repository/models/{MODEL}/unload", "POST")[0] == 200  # reaches one worker
    deadline = time.monotonic() + 10
    while {get(port, f"/v2/models/{MODEL}/ready")[0] for _ in range(12)} != {503}:
        assert time.monotonic() < deadline, "the other worker did not follow the unload"
        time.sleep(0.1)
    assert get(port, f"/v2/repository/models/{MODEL}/load", "POST")[0] == 200
    deadline = time.monotonic() + 10
    while {get(port, f"/v2/models/{MODEL}/ready")[0] for _ in range(12)} != {200}:
        assert time.monotonic() < deadline, "the other worker did not follow the load"
        time.sleep(0.1)

    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert children(process.pid) == [] and not any(Path(f"/proc/{pid}").exists() for pid in pids)
    with pytest.raises(OSError):
        get(port, "/v2/health/live")


def test_a_taken_port_fails_at_once(repository):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "serve", "serve", "--repository", str(repository)]
        result = subprocess.run(
            [*command, "--port", str(port), "--grpc-port", "0", "--workers", "2"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr == "error: cannot listen on 127.0.0.1: Address already in use\n"


@pytest.mark.parametrize("taken", ["--port", "--grpc-port"])
def test_one_process_with_a_taken_port_exits_2_and_says_so(repository, taken):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port()), taken: str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "serve", "serve", "--repository", str(repository)]
            + [part for flag, value in ports.items() for part in (flag, value)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    expected = (
        "address already in use" if taken == "--port" else f"cannot listen on 127.0.0.1:{port} for gRPC"
    )
    assert expected in result.stderr
