"""The first request a version answers, against the steady p50, with warm-up (the default) and without
(--no-warmup), the two servers side by side in one run: 1-row V2 JSON requests one at a time on one
kept-alive connection (opened before the clock starts), the first right after the server is ready, then
the first after each new version is swapped in (published as an export does; the poll every 50 ms; the
swap seen in the model's metadata on another connection). Beside it, a control request made the same way
right after, the first onnxruntime call's time from the server's own statistics, and a second control
with no update at all: after as long a pause as the update took (the same metadata calls every 5 ms on
the other connection), one request to the version already serving, warm for hundreds of requests. What
an update adds is the first request over that pause control; the rest is what any request pays after the
server has been idle that long (CPU caches and the core's wake-up, not the model: see the README)."""

from __future__ import annotations

import contextlib
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


SERVERS = {"with warm-up": (), "--no-warmup": ("--no-warmup",)}


def after_startup(repository: Path, flags: tuple[str, ...]) -> tuple[float, float]:
    """(seconds of the first request once the server is ready, the steady p50 after it)."""
    with server("ours", repository, "--poll-s", "0", *flags) as (port, _, _):
        client = Client(port)
        return client.infer()[0], client.steady_p50(STEADY_REQUESTS)


def after_pause(client: Client, watcher: Client, pause: float) -> float:
    """Seconds of one request to the version already serving, after `pause` seconds of the watcher's
    metadata calls every 5 ms (as an update's wait has them), the last one right before it."""
    deadline = time.monotonic() + pause
    while True:
        watcher.versions()
        if time.monotonic() >= deadline:
            return client.infer()[0]
        time.sleep(0.005)


def after_update(repo: Path, client: Client, watcher: Client) -> tuple[float, float, float, float, float]:
    """Publish a version, wait until it is swapped in, then: (seconds of its first request, its
    onnxruntime call in the server's statistics, a control request made the same way right after, the
    steady p50 after that, the pause from publishing to the swap seen)."""
    published = time.monotonic()
    version = republish(repo, MODEL).parent.name
    deadline = published + 30
    while watcher.versions() != [version]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"version {version} was not swapped in within 30 s")
        time.sleep(0.005)
    pause = time.monotonic() - published
    seconds, answered = client.infer()
    if answered != version:
        raise RuntimeError(f"version {answered} answered, not the new {version}")
    first_call = watcher.onnxruntime_seconds(version)  # the control: the same two calls, the version used
    control = client.infer()[0]
    return seconds, first_call, control, client.steady_p50(STEADY_REQUESTS // 3), pause


def idle_wake(repository: Path, repeats: int = 30) -> dict:
    """In this process, no server: one warm session's 1-row call, and a 100-step Python loop, right after
    the previous one and after sleeping 5 ms (medians, µs): what any request pays after an idle pause."""
    from serve.model import Model

    model = Model.load(repository / MODEL)
    row = np.full((1, model.n_features), np.nan, np.float32)
    for _ in range(200):
        model.run(row)
    found = {}
    for pause in (0.0, 0.005):
        calls, loops = [], []
        for _ in range(repeats):
            time.sleep(pause)
            start = time.perf_counter()
            model.run(row)
            calls.append(time.perf_counter() - start)
            time.sleep(pause)
            start = time.perf_counter()
            sum(range(100))
            loops.append(time.perf_counter() - start)
        found[f"{pause * 1e3:g} ms"] = {
            "onnxruntime_us": float(np.median(calls)) * 1e6,
            "loop_us": float(np.median(loops)) * 1e6,
        }
    return found


def run(repository: Path, starts: int = 5, updates: int = 20) -> tuple[dict, str]:
    """Both servers side by side: startups alternating, then updates alternating between two servers
    running at once (each on its own copy of the model)."""
    samples = {
        name: {"startup": [], "update": [], "first_call": [], "control": [], "steady": [], "paused": []}
        for name in SERVERS
    }
    for _ in range(starts):
        for name, flags in SERVERS.items():
            first, p50 = after_startup(repository, flags)
            samples[name]["startup"].append(first)
            samples[name]["steady"].append(p50)
    with contextlib.ExitStack() as stack:
        running = {}
        for name, flags in SERVERS.items():
            repo = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-warmup-")))
            shutil.copytree(repository / MODEL, repo / MODEL)
            port = stack.enter_context(server("ours", repo, "--poll-s", "0.05", *flags))[0]
            running[name] = (repo, Client(port), Client(port))
            running[name][1].steady_p50(STEADY_REQUESTS)  # the server's own Python code warm first
        for _ in range(updates):
            for name, (repo, client, watcher) in running.items():
                first, first_call, control, p50, pause = after_update(repo, client, watcher)
                paused = after_pause(client, watcher, pause)  # the same wait, no update
                client.steady_p50(STEADY_REQUESTS // 3)
                for key, value in zip(
                    ("update", "first_call", "control", "steady", "paused"),
                    (first, first_call, control, p50, paused),
                ):
                    samples[name][key].append(value)
    results, rows = {}, []
    for name, s in samples.items():
        p50 = float(np.median(s["steady"]))
        r = results[name] = {
            "steady_p50_ms": p50 * 1e3,
            "first_after_startup_ms": [x * 1e3 for x in s["startup"]],
            "first_after_update_ms": [x * 1e3 for x in s["update"]],
            "control_ms": [x * 1e3 for x in s["control"]],
            "first_onnxruntime_call_us": [x * 1e6 for x in s["first_call"]],
            "startup_ratio": float(np.median(s["startup"])) / p50,
            "update_ratio": float(np.median(s["update"])) / p50,
            "update_ratio_p90": float(np.percentile(s["update"], 90)) / p50,
            "control_ratio": float(np.median(s["control"])) / p50,
            "after_pause_ms": [x * 1e3 for x in s["paused"]],
            "pause_ratio": float(np.median(s["paused"])) / p50,
            "update_over_pause": float(np.median(np.array(s["update"]) / np.array(s["paused"]))),
        }
        rows.append(
            (
                name,
                f"{r['steady_p50_ms']:.3f}",
                f"{np.median(r['first_after_startup_ms']):.3f} ({r['startup_ratio']:.2f}x)",
                f"{np.median(r['first_after_update_ms']):.3f} ({r['update_ratio']:.2f}x, p90 "
                f"{r['update_ratio_p90']:.2f}x)",
                f"{np.median(r['control_ms']):.3f} ({r['control_ratio']:.2f}x)",
                f"{np.median(r['first_onnxruntime_call_us']):.0f}",
                f"{np.median(r['after_pause_ms']):.3f} ({r['pause_ratio']:.2f}x)",
                f"{r['update_over_pause']:.2f}x",
            )
        )
    text = table(
        f"first request after startup and after an update / steady p50 ({MODEL}, 1-row V2 JSON, one at a "
        f"time; medians of {starts} startups and {updates} updates per server, the servers alternating)",
        (
            "server",
            "steady p50 ms",
            "first after startup ms",
            "first after an update ms",
            "the request after it, same way (control)",
            "its onnxruntime call µs",
            "no update, as long a pause (control) ms",
            "first after an update / pause control (median of pairs)",
        ),
        rows,
    )
    results["idle_wake"] = wake = idle_wake(repository)
    text += "\n" + table(
        "after an idle pause, in this process (a warm session's 1-row call; a 100-step Python loop), medians",
        ("pause before it", "onnxruntime call µs", "Python loop µs"),
        [(k, f"{v['onnxruntime_us']:.1f}", f"{v['loop_us']:.1f}") for k, v in wake.items()],
    )
    return results, text
