"""Payload logs under load: 1-row V2 JSON at concurrency 64 against the same server without a payload
log, with `--payload-sample 1.0` to a file, and to /dev/full (a disk that refuses every write), in
alternating slices of one run (bench.serving's load: wrk when installed). Reports p99 and throughput
side by side, and what each log wrote and dropped (its /metrics)."""

from __future__ import annotations

import re
import tempfile
import urllib.request
from pathlib import Path

from bench.report import table
from bench.serving import alternate, bodies, load, server


def counters(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    found = re.findall(r'^payload_log_(written|dropped)_total(?:\{reason="(\w+)"\})? (\S+)$', text, re.M)
    return {f"{kind} {reason}".strip(): float(value) for kind, reason, value in found}


def run(repository: Path, seconds: float, rounds: int = 3, concurrency: int = 64) -> tuple[dict, str]:
    payload = bodies()["json"]
    with tempfile.TemporaryDirectory(prefix="bench-payloads-") as scratch:
        logged = ("--payload-log", str(Path(scratch) / "payloads.jsonl"), "--payload-sample", "1.0")
        full = ("--payload-log", "/dev/full", "--payload-sample", "1.0")
        with (
            server("ours", repository) as (plain, _, _),
            server("ours", repository, *logged) as (logging, _, _),
            server("ours", repository, *full) as (refused, _, _),
        ):
            ports = {"no payload log": plain, "--payload-sample 1.0": logging, "to /dev/full": refused}
            for port in ports.values():  # warm-up
                load(port, *payload, 8, min(2.0, seconds))
            runs = alternate(ports, payload, concurrency, seconds, rounds)
            for name, port in ports.items():
                runs[name]["payload_log"] = counters(port)
            size = sum(p.stat().st_size for p in Path(scratch).iterdir())
    base = runs["no payload log"]
    rows = []
    for name, r in runs.items():
        counts = r["payload_log"]
        rows.append(
            (
                name,
                f"{r['requests_per_s']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['p99_ms'] / base['p99_ms']:.2f}x",
                r["errors"],
                f"{counts.get('written', 0):.0f}" if counts else "",
                ", ".join(
                    f"{k.split()[1]} {v:.0f}" for k, v in counts.items() if k.startswith("dropped") and v
                ),
            )
        )
    ratio = runs["--payload-sample 1.0"]["p99_ms"] / base["p99_ms"]
    results = {**runs, "p99_ratio": ratio, "log_bytes": size, "concurrency": concurrency}
    text = table(
        f"payload log at concurrency {concurrency}, 1-row V2 JSON, {seconds:g}s per server in {rounds} "
        "slices "
        f"(p99 with/without {ratio:.2f}x; {size / 1e6:.1f} MB of CloudEvents written)",
        ("server", "req/s", "p50 ms", "p99 ms", "p99 / no log", "errors", "logged", "dropped"),
        rows,
    )
    return results, text
