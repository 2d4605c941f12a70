"""Model updates under load, against a real server process: 32 concurrent clients (16 gRPC through
tritonclient.grpc.aio, 16 HTTP keep-alive connections) for at least 20 s while 20 new versions and one
damaged one are published. No request fails; every answer is one whole version's output for its rows;
once a swap is visible in the repository index, no request sent afterwards is answered by an older
version; the damaged version is refused while the previous one serves; resident memory after 20 swaps
stays within 10% of the first version's."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as triton_aio

from tests.conftest import ROOT
from tests.serving import free_port
from tests.versions import MODEL, car_rows, outputs_of, publish_corrupt_version, publish_version, shifted

SWAPS = 20
SWAP_EVERY_S = 1.0  # 20 swaps: a bit over 20 s of load
CONCURRENCY = 32
POOL = [car_rows(k % 4 + 1, seed=k) for k in range(64)]  # distinct rows, 1 to 4 per request


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def index(port: int) -> list[dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/repository/index", b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Publisher(threading.Thread):
    """Publishes versions 2, 3, ... (one of them damaged) and records when each swap became visible."""

    def __init__(self, repo: Path, port: int, pid: int, original: bytes):
        super().__init__(daemon=True)
        self.repo, self.port, self.pid, self.original = repo, port, pid, original
        self.visible: dict[int, float] = {}  # version → when the index first showed it READY
        self.files: dict[int, bytes] = {1: original}
        self.corrupt: int | None = None
        self.corrupt_index: list[dict] = []
        self.rss: list[float] = []  # after the first version warmed up, then after the last swap
        self.error: BaseException | None = None

    def wait_until(self, condition, what: str) -> list[dict]:
        deadline = time.monotonic() + 15
        while True:
            rows = index(self.port)
            if condition(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not visible: {rows}")
            time.sleep(0.02)

    def run(self) -> None:
        try:
            time.sleep(2.0)  # the first version, warmed up under load
            self.rss.append(rss_mb(self.pid))
            swaps = 0
            while swaps < SWAPS:
                started = time.monotonic()
                if swaps == SWAPS // 2 and self.corrupt is None:
                    self.corrupt = publish_corrupt_version(self.repo, shifted(self.original, 999.0))
                    self.corrupt_index = self.wait_until(
                        lambda rows: any(r.get("version") == str(self.corrupt) for r in rows), "refusal"
                    )
                else:
                    version = len(self.files) + (self.corrupt is not None) + 1
                    self.files[version] = shifted(self.original, float(version))
                    assert publish_version(self.repo, self.files[version]) == version
                    wanted = [{"name": MODEL, "version": str(version), "state": "READY"}]
                    self.wait_until(lambda rows, wanted=wanted: rows[:1] == wanted, f"version {version}")
                    self.visible[version] = time.monotonic()
                    swaps += 1
                time.sleep(max(0.0, SWAP_EVERY_S - (time.monotonic() - started)))
            time.sleep(0.5)
            self.rss.append(rss_mb(self.pid))
        except BaseException as exc:  # reported by the test
            self.error = exc


async def load(http_port: int, grpc_port: int, publisher: Publisher) -> list[tuple]:
    """(sent, received, transport, version or error, request index, prediction) of every request."""
    answers: list[tuple] = []

    async def grpc_client(client, seed: int):
        k = seed
        while publisher.is_alive():
            k = (k + 7) % len(POOL)
            features = triton_aio.InferInput("features", list(POOL[k].shape), "FP32")
            features.set_data_from_numpy(POOL[k])
            sent = time.monotonic()
            try:
                result = await client.infer(MODEL, [features])
                version, prediction = result.get_response().model_version, result.as_numpy("prediction")
            except Exception as exc:
                version, prediction = f"error: {exc}", None
            answers.append((sent, time.monotonic(), "grpc", version, k, prediction))

    async def http_client(seed: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        k = seed
        while publisher.is_alive():
            k = (k + 5) % len(POOL)
            rows = POOL[k]
            body = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "FP32",
                            "shape": list(rows.shape),
                            "data": rows.tolist(),
                        }
                    ]
                }
            ).encode()
            sent = time.monotonic()
            head = f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            data = json.loads(await reader.readexactly(length))
            if status == 200:
                version, prediction = data["model_version"], np.reshape(data["outputs"][0]["data"], (-1, 1))
            else:
                version, prediction = f"error: {status} {data}", None
            answers.append((sent, time.monotonic(), "http", version, k, prediction))
        writer.close()

    async with triton_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
        await asyncio.gather(
            *(grpc_client(client, k) for k in range(CONCURRENCY // 2)),
            *(http_client(k) for k in range(CONCURRENCY // 2)),
        )
    return answers


def test_versions_swap_under_load_without_a_failed_or_mixed_answer(repository, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(repository / MODEL, repo / MODEL)
    original = (repo / MODEL / "1" / "model.onnx").read_bytes()
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serve", "serve", "--repository", str(repo), "--port", str(port)]
    command += ["--grpc-port", str(grpc_port), "--poll-s", "0.1"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            if line.startswith(("ready", "NOT ready")):
                break
        publisher = Publisher(repo, port, server.pid, original)
        started = time.monotonic()
        publisher.start()
        answers = asyncio.run(load(port, grpc_port, publisher))
        seconds = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(15)
    if publisher.error:
        raise publisher.error

    failed = [a[3] for a in answers if a[3].startswith("error")]
    print(
        f"\nupdates under load: {len(answers)} requests in {seconds:.1f}s, {len(publisher.visible)} swaps, "
        f"versions answering {sorted({int(a[3]) for a in answers if not a[3].startswith('error')})}, "
        f"RSS {publisher.rss[0]:.1f} -> {publisher.rss[-1]:.1f} MB"
    )
    assert seconds >= 20 and len(publisher.visible) == SWAPS and not failed, failed[:5]

    expected = {
        v: outputs_of(onnx, np.concatenate(POOL))["prediction"] for v, onnx in publisher.files.items()
    }
    bounds = np.cumsum([0] + [len(rows) for rows in POOL])
    for _, _, transport, version, k, prediction in answers:
        want = expected[int(version)][bounds[k] : bounds[k + 1]]  # the damaged version is not in `files`
        assert np.allclose(prediction, want, rtol=1e-5, atol=1e-4), (transport, version, k)

    for version, visible in publisher.visible.items():  # after a swap is visible, nothing older answers
        late = [a for a in answers if a[0] > visible and int(a[3]) < version]
        assert not late, (version, late[:3])
    received = sorted((a[1], int(a[3])) for a in answers)  # nor after a newer answer arrived
    arrival = np.array([t for t, _ in received])
    newest = np.maximum.accumulate([v for _, v in received])
    for sent, _, transport, version, _, _ in answers:
        seen = np.searchsorted(arrival, sent) - 1
        assert seen < 0 or int(version) >= newest[seen], (transport, version, newest[seen])

    refused = [r for r in publisher.corrupt_index if r.get("version") == str(publisher.corrupt)]
    assert refused[0]["state"] == "UNAVAILABLE" and "does not match the sha256" in refused[0]["reason"]
    assert [r["state"] for r in publisher.corrupt_index if r.get("version") != str(publisher.corrupt)] == [
        "READY"
    ]
    assert publisher.rss[-1] <= 1.10 * publisher.rss[0]
