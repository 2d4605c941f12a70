"""gRPC serving, side by side in one run:
- 1-row ModelInfer (raw contents, as tritonclient sends) at concurrency 8 and 64: this server vs the
  minimal grpc.aio + onnxruntime server (bench/reference_grpc_server.py), alternating, beside this
  server's HTTP binary numbers at the same concurrencies;
- p99 while a new version is published every second (the server swaps each in) vs the same load without;
- --workers 2 vs 1 at concurrency 64, gRPC and HTTP binary (on 2 cores shared with the load generator:
  reported, the baseline for a bigger machine).
The load generator is grpc.aio client coroutines sending pre-serialized requests, one connection per 8.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from bench.report import table
from bench.serving import MODEL, ROOT, ROW, bodies, free_port, load, server
from serve.grpc.messages import SERVICE, ModelInferRequest

CALLS_PER_CHANNEL = 8  # coroutines sharing one HTTP/2 connection


def infer_request() -> bytes:
    request = ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="features", datatype="FP32", shape=[1, 16])
    request.raw_input_contents.append(np.array(ROW, "<f4").tobytes())
    return request.SerializeToString()


async def grpc_load_async(port: int, concurrency: int, seconds: float) -> dict:
    body, latencies, errors = infer_request(), [], 0
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per channel, not one shared
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        for _ in range(max(1, concurrency // CALLS_PER_CHANNEL))
    ]
    deadline = time.perf_counter() + seconds

    async def caller(k: int):
        nonlocal errors
        call = channels[k % len(channels)].unary_unary(f"/{SERVICE}/ModelInfer")  # bytes in, bytes out
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await call(body, timeout=30)
                latencies.append(time.perf_counter() - start)
            except grpc.RpcError:
                errors += 1

    for channel in channels:
        await channel.channel_ready()
    start = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3) if latencies else float("nan"),
        "errors": errors,
        "requests": len(latencies),
    }


def grpc_load(port: int, concurrency: int, seconds: float) -> dict:
    return asyncio.run(grpc_load_async(port, concurrency, seconds))


def medians(parts: list[dict]) -> dict:
    return {
        "requests_per_s": float(np.median([r["requests_per_s"] for r in parts])),
        "p50_ms": float(np.median([r["p50_ms"] for r in parts])),
        "p99_ms": float(np.median([r["p99_ms"] for r in parts])),
        "errors": sum(r["errors"] for r in parts),
        "requests": sum(r["requests"] for r in parts),
    }


def alternate(loads: dict, seconds: float, rounds: int) -> dict:
    """Each load run for `seconds` in all, in `rounds` alternating slices; medians of the slices."""
    slices: dict[str, list] = {name: [] for name in loads}
    for _ in range(rounds):
        for name, run in loads.items():
            slices[name].append(run(seconds / rounds))
    return {name: medians(parts) for name, parts in slices.items()}


@contextlib.contextmanager
def reference_grpc(repository: Path):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "reference_grpc_server.py"),
            str(repository / MODEL),
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline() == "ready\n", "reference gRPC server did not start"
        yield port
    finally:
        process.terminate()
        process.wait(10)


def row(concurrency, name: str, r: dict, ratio: str = "") -> tuple:
    return (
        concurrency,
        name,
        f"{r['requests_per_s']:.0f}",
        f"{r['p50_ms']:.2f}",
        f"{r['p99_ms']:.2f}",
        r["errors"],
        ratio,
    )


def versus_reference(repository: Path, seconds: float, rounds: int, concurrencies) -> tuple[dict, str]:
    grpc_port = free_port()
    binary = bodies()["binary"]
    results, rows = {}, []
    with (
        server("ours", repository, "--grpc-port", str(grpc_port)) as (http_port, _, _),
        reference_grpc(repository) as reference,
    ):
        for port in (grpc_port, reference):  # warm-up
            grpc_load(port, 8, min(1.0, seconds))
        for concurrency in concurrencies:
            runs = alternate(
                {
                    "ours grpc": lambda s, c=concurrency: grpc_load(grpc_port, c, s),
                    "reference grpc": lambda s, c=concurrency: grpc_load(reference, c, s),
                    "ours http binary": lambda s, c=concurrency: load(http_port, *binary, c, s),
                },
                seconds,
                rounds,
            )
            ours, ref = runs["ours grpc"], runs["reference grpc"]
            ratio = ours["requests_per_s"] / ref["requests_per_s"]
            results[concurrency] = {
                **runs,
                "throughput_ratio": ratio,
                "p99_ratio": ours["p99_ms"] / ref["p99_ms"],
            }
            for name, r in runs.items():
                rows.append(row(concurrency, name, r, f"{ratio:.2f}x" if name == "ours grpc" else ""))
    text = table(
        f"gRPC: 1-row ModelInfer on {MODEL}, {seconds:g}s per run (grpc.aio client, "
        f"{CALLS_PER_CHANNEL} calls per connection); HTTP binary beside it",
        ("conc", "server", "req/s", "p50 ms", "p99 ms", "errors", "ours/ref"),
        rows,
    )
    return results, text


def republish(repo: Path, name: str = MODEL) -> Path:
    """Publish the model's current file again as the next version (as an export does); its model.onnx."""
    from export.repository import publish

    manifest = json.loads((repo / name / "manifest.json").read_text())
    base = {
        k: v
        for k, v in manifest.items()
        if k not in ("version", "sha256", "size_bytes", "created", "versions")
    }
    onnx_file = repo / name / str(manifest["version"]) / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "model.onnx"
        shutil.copyfile(onnx_file, source)
        return publish(repo, name, source, base, keep_versions=True)


def publish_every(repo: Path, every_s: float, stop: threading.Event, published: list) -> None:
    """Publish the model's current file again as the next version, every `every_s`."""
    while not stop.wait(every_s):
        published.append(republish(repo))


def during_updates(repository: Path, seconds: float, rounds: int, concurrency: int = 32) -> tuple[dict, str]:
    results: dict[str, list] = {"steady": [], "updates": []}
    published: list = []
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as scratch:
        repo = Path(scratch)
        shutil.copytree(repository / MODEL, repo / MODEL)
        grpc_port = free_port()
        with server("ours", repo, "--grpc-port", str(grpc_port), "--poll-s", "0.2"):
            grpc_load(grpc_port, 8, min(1.0, seconds))
            for _ in range(rounds):
                results["steady"].append(grpc_load(grpc_port, concurrency, seconds / rounds))
                stop = threading.Event()
                every = min(1.0, seconds / rounds / 4)  # a version a second; more often in a smoke run
                publisher = threading.Thread(target=publish_every, args=(repo, every, stop, published))
                publisher.start()
                results["updates"].append(grpc_load(grpc_port, concurrency, seconds / rounds))
                stop.set()
                publisher.join()
    runs = {name: medians(parts) for name, parts in results.items()}
    ratio = runs["updates"]["p99_ms"] / runs["steady"]["p99_ms"]
    text = table(
        f"gRPC at concurrency {concurrency} while a version is published every second "
        f"({len(published)} swaps; p99 with/without {ratio:.2f}x)",
        ("conc", "load", "req/s", "p50 ms", "p99 ms", "errors", ""),
        [row(concurrency, name, r) for name, r in runs.items()],
    )
    return {**runs, "p99_ratio": ratio, "versions_published": len(published)}, text


def workers(repository: Path, seconds: float, concurrency: int = 64) -> tuple[dict, str]:
    binary = bodies()["binary"]
    results, rows = {}, []
    for count in (1, 2):
        grpc_port = free_port()
        with server("ours", repository, "--grpc-port", str(grpc_port), "--workers", str(count)) as (
            port,
            _,
            _,
        ):
            time.sleep(1.0)  # the second worker may answer a moment after the first
            grpc_load(grpc_port, 8, min(1.0, seconds))
            results[count] = {
                "grpc": grpc_load(grpc_port, concurrency, seconds),
                "http binary": load(port, *binary, concurrency, seconds),
            }
            for name, r in results[count].items():
                rows.append(row(concurrency, f"{count} worker(s), {name}", r))
    for name in ("grpc", "http binary"):
        results[f"ratio {name}"] = results[2][name]["requests_per_s"] / results[1][name]["requests_per_s"]
    text = table(
        f"--workers 2 vs 1 at concurrency {concurrency} (gRPC {results['ratio grpc']:.2f}x, HTTP binary "
        f"{results['ratio http binary']:.2f}x; the load generator shares the 2 cores)",
        ("conc", "server", "req/s", "p50 ms", "p99 ms", "errors", ""),
        rows,
    )
    return results, text


def run(repository: Path, seconds: float, rounds: int = 3, concurrencies=(8, 64)) -> tuple[dict, str]:
    reference, reference_text = versus_reference(repository, seconds, rounds, concurrencies)
    updates, updates_text = during_updates(repository, 2 * seconds, rounds)
    scaling, scaling_text = workers(repository, seconds)
    results = {"versus_reference": reference, "during_updates": updates, "workers": scaling}
    return results, reference_text + updates_text + scaling_text
