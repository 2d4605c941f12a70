"""The first request a version answers, against the steady p50, with warm-up (the default) and without
(--no-warmup), the two servers side by side in one run: 1-row V2 JSON requests one at a time on one
kept-alive connection (opened before the clock starts), the first right after the server is ready, then
the first after each of `updates` new versions is swapped in (published as an export does; the poll
every 50 ms; the swap seen in the model's metadata on another connection)."""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.grpc_serving import republish
from bench.report import table
from bench.serving import MODEL, bodies, server

STEADY_REQUESTS = 300  # per measurement of the steady p50


class Client:
    """One kept-alive HTTP connection to a server's 1-row inference endpoint."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.connect()  # not part of any request's time
        self.body = bodies()["json"][0]

    def infer(self) -> tuple[float, str]:
        """(seconds, the version that answered)."""
        start = time.perf_counter()
        self.connection.request("POST", f"/v2/models/{MODEL}/infer", body=self.body)
        response = self.connection.getresponse()
        data = response.read()
        seconds = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"inference failed: {response.status} {data[:200]!r}")
        return seconds, json.loads(data)["model_version"]

    def steady_p50(self, n: int) -> float:
        return float(np.median([self.infer()[0] for _ in range(n)]))

    def versions(self) -> list[str]:
        self.connection.request("GET", f"/v2/models/{MODEL}")
        return json.loads(self.connection.getresponse().read())["versions"]

    def onnxruntime_seconds(self, version: str) -> float:
        """The server's own time for the version's onnxruntime calls so far, per call (its statistics)."""
        self.connection.request("GET", f"/v2/models/{MODEL}/versions/{version}/stats")
        stats = json.loads(self.connection.getresponse().read())["model_stats"][0]
        calls = stats["inference_stats"]["compute_infer"]
        return calls["ns"] / 1e9 / max(calls["count"], 1)


def first_requests(repository: Path, warm: bool, starts: int, updates: int) -> dict:
    """Seconds of the first request after each of `starts` startups and after each of `updates` updates,
    of a control request made the same way right after each of those, and the steady p50."""
    flags = ("--poll-s", "0.05", *(() if warm else ("--no-warmup",)))
    after_startup, after_update, control, steady, first_call = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as scratch:
        repo = Path(scratch)
        shutil.copytree(repository / MODEL, repo / MODEL)
        for start in range(starts):
            with server("ours", repo, *flags) as (port, _, _):
                client, watcher = Client(port), Client(port)
                after_startup.append(client.infer()[0])
                steady.append(client.steady_p50(STEADY_REQUESTS))
                if start < starts - 1:
                    continue
                for _ in range(updates):
                    version = republish(repo, MODEL).parent.name
                    deadline = time.monotonic() + 30
                    while watcher.versions() != [version]:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"version {version} was not swapped in within 30 s")
                        time.sleep(0.005)
                    seconds, answered = client.infer()
                    if answered != version:
                        raise RuntimeError(f"version {answered} answered, not the new {version}")
                    after_update.append(seconds)
                    # the control: a call on the other connection, then one on this (the version used once)
                    first_call.append(watcher.onnxruntime_seconds(version))
                    control.append(client.infer()[0])
                    steady.append(client.steady_p50(STEADY_REQUESTS // 3))
    p50 = float(np.median(steady))
    return {
        "steady_p50_ms": p50 * 1e3,
        "first_after_startup_ms": [s * 1e3 for s in after_startup],
        "first_after_update_ms": [s * 1e3 for s in after_update],
        "control_ms": [s * 1e3 for s in control],
        "first_onnxruntime_call_us": [s * 1e6 for s in first_call],
        "startup_ratio": float(np.median(after_startup)) / p50,
        "update_ratio": float(np.median(after_update)) / p50,
        "update_ratio_max": max(after_update) / p50,
        "control_ratio": float(np.median(control)) / p50,
    }


def run(repository: Path, starts: int = 5, updates: int = 10) -> tuple[dict, str]:
    results = {}
    for name, warm in (("with warm-up", True), ("--no-warmup", False)):
        results[name] = first_requests(repository, warm, starts, updates)
    rows = [
        (
            name,
            f"{r['steady_p50_ms']:.3f}",
            f"{np.median(r['first_after_startup_ms']):.3f} ({r['startup_ratio']:.2f}x)",
            f"{np.median(r['first_after_update_ms']):.3f} ({r['update_ratio']:.2f}x, max "
            f"{r['update_ratio_max']:.2f}x)",
            f"{np.median(r['control_ms']):.3f} ({r['control_ratio']:.2f}x)",
            f"{np.median(r['first_onnxruntime_call_us']):.0f}",
        )
        for name, r in results.items()
    ]
    text = table(
        f"first request after startup and after an update / steady p50 ({MODEL}, 1-row V2 JSON, one at a "
        f"time; medians of {starts} startups and {updates} updates)",
        (
            "server",
            "steady p50 ms",
            "first after startup ms",
            "first after an update ms",
            "the request after it, same way (control)",
            "its onnxruntime call µs",
        ),
        rows,
    )
    return results, text
