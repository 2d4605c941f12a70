"""HTTP serving: this project's server vs the bare reference server (bench/reference_server.py), 1-row V2
infer requests at several concurrencies, run the same way, interleaved; batching on vs off; cold start
and resident memory. Load comes from wrk when installed, else from a built-in asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.report import table

ROOT = Path(__file__).resolve().parents[1]
MODEL = "zoo-multiclass"
ROW = [1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 4, 0, 0, 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, timeout: float = 30) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s")


@contextlib.contextmanager
def server(kind: str, repository: Path, *flags: str):
    """Start `ours` (python -m serve serve) or `reference`; yields (port, pid, seconds to ready)."""
    port = free_port()
    if kind == "ours":
        command = [
            sys.executable,
            "-m",
            "serve",
            "serve",
            "--repository",
            str(repository),
            "--port",
            str(port),
            *(() if "--grpc-port" in flags else ("--grpc-port", "0")),  # 8001 may be taken here
            *flags,
        ]
    else:
        command = [
            sys.executable,
            str(ROOT / "bench" / "reference_server.py"),
            str(repository / MODEL),
            str(port),
        ]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(port, "/v2/health/ready")
        yield port, process.pid, time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(10)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bodies() -> dict[str, tuple[bytes, dict]]:
    """The two request bodies: V2 JSON, and V2 binary (the tritonclient default)."""
    as_json = json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": ROW}]}
    ).encode()
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
    binary = header + np.array(ROW, np.float32).tobytes()
    return {"json": (as_json, {}), "binary": (binary, {"Inference-Header-Content-Length": str(len(header))})}


def wrk_load(port: int, body: bytes, headers: dict, concurrency: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        escaped = "".join(f"\\{b:03d}" for b in body)  # Lua decimal escapes keep binary bodies intact
        script.write(f'wrk.method = "POST"\nwrk.body = "{escaped}"\n')
        for key, value in headers.items():
            script.write(f'wrk.headers["{key}"] = "{value}"\n')
        script.write(LUA_DONE)
    url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
    threads = min(2, concurrency)
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(script.name)
    summary = json.loads(output.strip().splitlines()[-1])
    return {
        "requests_per_s": summary["requests"] / summary["seconds"],
        "p50_ms": summary["p50"] / 1000,
        "p99_ms": summary["p99"] / 1000,
        "errors": summary["errors"],
        "requests": summary["requests"],
    }


LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format('{"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), errors))
end
"""


async def asyncio_load_async(port, body, headers, concurrency, seconds) -> dict:
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    latencies, errors, deadline = [], 0, time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(head + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            errors += not status.split(b" ")[1].startswith(b"2")
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "errors": errors,
        "requests": len(latencies),
    }


def load(port, body, headers, concurrency, seconds) -> dict:
    if shutil.which("wrk"):
        return wrk_load(port, body, headers, concurrency, seconds)
    return asyncio.run(asyncio_load_async(port, body, headers, concurrency, seconds))


def alternate(ports: dict, payload, concurrency: int, seconds: float, rounds: int = 3) -> dict:
    """Each server loaded for `seconds` in all, in `rounds` alternating slices; medians of the slices."""
    slices: dict[str, list] = {name: [] for name in ports}
    for _ in range(rounds):
        for name, port in ports.items():
            slices[name].append(load(port, *payload, concurrency, seconds / rounds))
    return {
        name: {
            "requests_per_s": float(np.median([r["requests_per_s"] for r in parts])),
            "p50_ms": float(np.median([r["p50_ms"] for r in parts])),
            "p99_ms": float(np.median([r["p99_ms"] for r in parts])),
            "errors": sum(r["errors"] for r in parts),
            "requests": sum(r["requests"] for r in parts),
        }
        for name, parts in slices.items()
    }


def batch_stats(port: int) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()

    def value(metric):
        match = re.search(rf'^{metric}{{model="{MODEL}"}} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    return value("inference_batch_rows_count"), value("inference_batch_rows_sum")


def run(repository: Path, seconds: float, concurrencies=(1, 8, 64), rounds: int = 3) -> tuple[dict, str]:
    generator = "wrk" if shutil.which("wrk") else "asyncio client (install wrk: apt-get install wrk)"
    payloads = bodies()
    results = {"load_generator": generator, "runs": []}
    rows = []
    with server("ours", repository) as (ours, ours_pid, _), server("reference", repository) as (ref, _, _):
        rss_loaded = rss_mb(ours_pid)
        for port in (ours, ref):  # warm-up
            load(port, *payloads["json"], 8, min(2.0, seconds))
        for concurrency in concurrencies:
            for body_kind in ("json", "binary"):
                # the reference speaks V2 JSON only; rounds alternate the servers so noise hits both
                ports = {"ours": ours, "reference": ref} if body_kind == "json" else {"ours": ours}
                pair = alternate(ports, payloads[body_kind], concurrency, seconds, rounds)
                results["runs"].append({"concurrency": concurrency, "body": body_kind, **pair})
                ratio = (
                    f"{pair['ours']['requests_per_s'] / pair['reference']['requests_per_s']:.2f}x"
                    if "reference" in pair
                    else "-"
                )
                for name, r in pair.items():
                    rows.append(
                        (
                            concurrency,
                            body_kind,
                            name,
                            f"{r['requests_per_s']:.0f}",
                            f"{r['p50_ms']:.2f}",
                            f"{r['p99_ms']:.2f}",
                            r["errors"],
                            ratio if name == "ours" else "",
                        )
                    )
        results["rss_mb"] = {"loaded": rss_loaded, "after_load": rss_mb(ours_pid)}
    text = table(
        f"HTTP: 1-row V2 infer on {MODEL}, {seconds:g}s per run, load from {generator}",
        ("conc", "body", "server", "req/s", "p50 ms", "p99 ms", "errors", "ours/ref"),
        rows,
    )
    batching, batching_text = batching_on_off(repository, payloads["json"], seconds)
    cold, cold_text = cold_start(repository, repeats=2 * rounds - 1)
    results.update(batching=batching, cold_start=cold)
    memory = results["rss_mb"]
    memory_text = (
        f"\n== memory: RSS {memory['loaded']:.1f} MB with all built-in models loaded, "
        f"{memory['after_load']:.1f} MB after the load test "
        f"({(memory['after_load'] / memory['loaded'] - 1) * 100:+.1f}%)"
    )
    return results, text + batching_text + cold_text + memory_text


def batching_on_off(repository: Path, payload, seconds: float) -> tuple[dict, str]:
    results, rows = {}, []
    for label, flags in (("on", ()), ("off", ("--no-batching",))):
        with server("ours", repository, *flags) as (port, _, _):
            load(port, *payload, 64, min(2.0, seconds))
            calls_before, rows_before = batch_stats(port)
            r = load(port, *payload, 64, seconds)
            calls, total = batch_stats(port)
            r["rows_per_call"] = (total - rows_before) / max(calls - calls_before, 1)
            results[label] = r
            rows.append(
                (
                    label,
                    f"{r['requests_per_s']:.0f}",
                    f"{r['p99_ms']:.2f}",
                    f"{r['rows_per_call']:.2f}",
                    r["errors"],
                )
            )
    results["ratio"] = results["on"]["requests_per_s"] / results["off"]["requests_per_s"]
    text = table(
        f"dynamic batching at concurrency 64 (on/off throughput {results['ratio']:.2f}x)",
        ("batching", "req/s", "p99 ms", "rows per onnxruntime call", "errors"),
        rows,
    )
    return results, text


def cold_start(repository: Path, repeats: int) -> tuple[dict, str]:
    times = []
    for _ in range(repeats):
        with server("ours", repository) as (_, _, seconds):
            times.append(seconds)
    result = {"median_s": float(np.median(times)), "all_s": times}
    return (
        result,
        f"\n== cold start (process start to /v2/health/ready = 200): median {result['median_s']:.2f}s "
        f"of {repeats} ({', '.join(f'{t:.2f}' for t in times)})",
    )
