"""Load and soak against a real server process: 64 keep-alive connections sending a mix of V2 JSON, V2
binary, V1 and invalid requests, every answer checked against its own rows; overload; SIGTERM.

SOAK_SECONDS sets the soak's length (CI: 4; `make soak`: 60, and it prints the counts)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serve.model import Model
from tests.conftest import ROOT
from tests.serving import free_port

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "4"))
MODEL = "auto-mpg"
KINDS = ("json", "binary", "v1")  # valid requests; every fourth request is invalid


def start_server(repository: Path, *flags: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serve",
            "serve",
            "--repository",
            str(repository),
            "--port",
            str(port),
            *flags,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if line.startswith(("ready", "NOT ready")):
            return process, port
    raise RuntimeError("server exited before it was ready")


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of a process."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, timeout: float = 10.0) -> int:
    """Open file descriptors once the count holds still for 0.5 s: a client's close returns before the
    server has seen the EOF and closed its end, so an immediate count still holds the last connections."""
    counts = [proc_status(pid)[1]]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (len(counts) < 10 or len(set(counts[-10:])) > 1):
        time.sleep(0.05)
        counts.append(proc_status(pid)[1])
    return counts[-1]


def build_requests(runtime: Model, n: int = 256) -> list[tuple[str, bytes, dict, object]]:
    """(kind, body, headers, expected) with distinct rows, so a mix-up in batching cannot go unseen."""
    rng = np.random.default_rng(0)
    names = [f["name"] for f in runtime.features]
    requests = []
    for k in range(n):
        rows = rng.normal([5, 190, 100, 2900, 15, 76, 2], [1.5, 100, 35, 800, 3, 3, 0.8], (k % 4 + 1, 7))
        rows = rows.astype(np.float32)
        rows[:, names.index("origin")] = rng.integers(1, 4, len(rows))
        expected = runtime.predict(rows)["prediction"]
        kind = (*KINDS, "invalid")[k % 4]
        if kind == "json":
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
            requests.append((kind, body, {}, expected))
        elif kind == "binary":
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "FP32",
                            "shape": list(rows.shape),
                            "parameters": {"binary_data_size": rows.nbytes},
                        }
                    ],
                    "parameters": {"binary_data_output": True},
                }
            ).encode()
            requests.append(
                (kind, header + rows.tobytes(), {"Inference-Header-Content-Length": len(header)}, expected)
            )
        elif kind == "v1":
            instances = [dict(zip(names, map(float, row))) for row in rows]
            requests.append((kind, json.dumps({"instances": instances}).encode(), {}, expected))
        else:
            body = json.dumps(
                {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 6], "data": [0] * 6}]}
            ).encode()
            requests.append((kind, body, {}, None))
    return requests


def check(kind: str, status: int, headers: dict, body: bytes, expected) -> str:
    """'' when the answer is right for its request, else what was wrong."""
    if kind == "invalid":
        return "" if status == 400 and b'"error"' in body else f"invalid request got {status}"
    if status != 200:
        return f"{kind} got {status}: {body[:200]!r}"
    if kind == "binary":
        length = int(headers[b"inference-header-content-length"])
        got = np.frombuffer(body[length:], dtype="<f4").reshape(-1, 1)
    elif kind == "json":
        got = np.array(json.loads(body)["outputs"][0]["data"], np.float32).reshape(-1, 1)
    else:
        got = np.array([[p["mpg"]] for p in json.loads(body)["predictions"]], np.float32)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-4):
        return f"{kind} answer is not its own rows' result"
    return ""


async def exchange(reader, writer, path: str, body: bytes, headers: dict, method: str = "POST"):
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    status = int((await reader.readline()).split()[1])
    response_headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.partition(b":")
        response_headers[key.strip().lower()] = value.strip()
    return status, response_headers, await reader.readexactly(int(response_headers[b"content-length"]))


async def soak(port: int, requests, seconds: float, concurrency: int = 64):
    statuses, problems = collections.Counter(), []
    deadline = time.monotonic() + seconds

    async def connection(seed: int):
        pick = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            kind, body, headers, expected = pick.choice(requests)
            path = f"/v1/models/{MODEL}:predict" if kind == "v1" else f"/v2/models/{MODEL}/infer"
            status, response_headers, data = await exchange(reader, writer, path, body, headers)
            statuses[(kind, status)] += 1
            problem = check(kind, status, response_headers, data, expected)
            if problem:  # a 503 too: with the default queue (2048) and 64 connections it never fills
                problems.append(problem)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(connection(k) for k in range(concurrency)))
    return statuses, problems


def test_soak_mixed_load_every_answer_its_own(repository):
    runtime = Model.load(repository / MODEL)
    requests = build_requests(runtime)
    process, port = start_server(repository)
    try:
        asyncio.run(soak(port, requests, min(1.0, SOAK_SECONDS)))  # warm-up
        rss_start, fds_start = proc_status(process.pid)[0], settled_fds(process.pid)
        samples = []
        statuses, problems = collections.Counter(), []
        for _ in range(max(1, int(SOAK_SECONDS // 2))):  # slices, sampling memory between them
            got, bad = asyncio.run(soak(port, requests, min(2.0, SOAK_SECONDS)))
            statuses.update(got)
            problems += bad
            samples.append(proc_status(process.pid)[0])
        rss_end, fds_end = proc_status(process.pid)[0], settled_fds(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    total = sum(statuses.values())
    print(
        f"\nsoak: {total} requests in {SOAK_SECONDS:g}s; status mix {dict(sorted(statuses.items()))}; "
        f"RSS {rss_start:.1f} -> {rss_end:.1f} MB; fds {fds_start} -> {fds_end}"
    )
    assert not problems, problems[:5]
    answered = {kind: sum(n for (k, s), n in statuses.items() if k == kind and s == 200) for kind in KINDS}
    assert all(answered.values()), answered  # every kind of valid request was served, not only refused
    assert sum(answered.values()) >= 0.6 * total, statuses  # a quarter of the mix is invalid (400)
    window = max(1, len(samples) // 5)  # first and last fifth (10 s each in the 60 s soak)
    assert np.mean(samples[-window:]) <= 1.10 * max(np.mean(samples[:window]), rss_start)
    assert fds_end <= fds_start + 2  # every client connection closed again, nothing leaked
    assert process.returncode == 0


def test_overload_answers_503_promptly_then_recovers(repository):
    process, port = start_server(repository, "--max-queue", "4", "--max-delay-us", "250000")
    try:

        async def burst():
            async def one():
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                body = json.dumps({"instances": [{"cylinders": 4}]}).encode()
                start = time.monotonic()
                status, _, data = await exchange(reader, writer, f"/v1/models/{MODEL}:predict", body, {})
                writer.close()
                return status, data, time.monotonic() - start

            return await asyncio.gather(*(one() for _ in range(64)))

        answers = asyncio.run(burst())
        refused = [(d, t) for s, d, t in answers if s == 503]
        assert len(refused) >= 32 and all(s in (200, 503) for s, _, _ in answers)
        assert all(
            json.loads(d) == {"error": f"model '{MODEL}' queue is full (4 requests)"} for d, _ in refused
        )
        assert max(t for _, t in refused) < 1.0  # refused at once, not after a hang
        calm = [asyncio.run(burst_of_one(port)) for _ in range(10)]
        assert calm == [200] * 10  # full service once the load drops
    finally:
        process.terminate()
        process.wait(10)


async def burst_of_one(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, _, _ = await exchange(
        reader, writer, f"/v1/models/{MODEL}:predict", b'{"instances": [{"cylinders": 4}]}', {}
    )
    writer.close()
    return status


async def queued(port: int) -> float:
    """The server's own count of requests waiting in the batching queue of MODEL (from /metrics)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, _, text = await exchange(reader, writer, "/metrics", b"", {}, method="GET")
    writer.close()
    assert status == 200
    prefix = f'inference_queue_requests{{model="{MODEL}"}} '.encode()
    return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(repository):
    process, port = start_server(repository, "--max-delay-us", "2000000")  # requests wait 2 s in the queue

    async def in_flight():
        async def one():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status, _, _ = await exchange(
                reader, writer, f"/v1/models/{MODEL}:predict", b'{"instances": [{"cylinders": 6}]}', {}
            )
            writer.close()
            return status

        tasks = [asyncio.create_task(one()) for _ in range(8)]
        deadline = time.monotonic() + 1.5
        while await queued(port) < 8:  # all 8 are in the server, waiting for their batch
            assert time.monotonic() < deadline, "requests never reached the queue"
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        return await asyncio.gather(*tasks)

    assert asyncio.run(in_flight()) == [200] * 8
    assert process.wait(10) == 0
    with pytest.raises(OSError):
        asyncio.run(asyncio.open_connection("127.0.0.1", port))  # no longer accepting
