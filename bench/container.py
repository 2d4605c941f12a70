"""The serving image, side by side with the same server on the host, in one run:
- size: the image uncompressed, its /opt/venv, the base image;
- start to ready: `podman run` invoked → /v2/health/ready answers 200, the built-in models mounted, vs
  the host's process start → ready;
- throughput: 1-row V2 infer over HTTP (JSON, wrk or the asyncio client) and gRPC (raw contents, grpc.aio
  clients) at concurrency 8 and 64, the container (host network, read-only, user 1000) and the host server
  loaded the same way in alternating slices; beside it, each server's CPU time per request (from /proc),
  which moves much less than throughput with whatever else the machine runs.

    python -m bench.container [--repository models] [--image localhost/tabular-deploy:latest]
                              [--seconds 10] [--rounds 3] [--quick]
Needs the image (`make image`) and the built-in models (`make all`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.grpc_serving import grpc_load, medians
from bench.report import table
from bench.serving import bodies, free_port, load, server, wait_ready
from deploy import podman as tools


@contextlib.contextmanager
def container(image: str, repository: Path):
    """The image run as `make run-image` runs it, on free ports; yields (http port, grpc port, seconds
    from `podman run` to ready, the server's pid on the host)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    http_port, grpc_port = free_port(), free_port()
    command = tools.run_command(
        image, repository, http_port=http_port, grpc_port=grpc_port, name=name, detach=True, remove=False
    )
    start = time.perf_counter()
    tools.podman(*command)
    try:
        wait_ready(http_port, "/v2/health/ready")
        seconds = time.perf_counter() - start
        pid = int(tools.podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        yield http_port, grpc_port, seconds, pid
    finally:
        tools.podman("rm", "--force", "--time", "0", name, check=False)


def sizes(image: str) -> dict:
    def size(name: str) -> int:
        return int(tools.podman("image", "inspect", "--format", "{{.Size}}", name).stdout)

    venv = tools.podman("run", "--rm", "--network", "none", "--entrypoint", "du", image, "-sb", "/opt/venv")
    result = {"image_mb": size(image) / 1e6, "venv_mb": int(venv.stdout.split()[0]) / 1e6}
    base = tools.LOCAL_BASE if tools.image_exists(tools.LOCAL_BASE) else tools.DEFAULT_BASE
    if tools.image_exists(base):
        result.update(base=base, base_mb=size(base) / 1e6)
    return result


def start_to_ready(image: str, repository: Path, repeats: int) -> dict:
    container_s, host_s = [], []
    for _ in range(repeats):
        with container(image, repository) as (_, _, seconds, _):
            container_s.append(seconds)
        with server("ours", repository) as (_, _, seconds):
            host_s.append(seconds)
    return {
        "container_median_s": float(np.median(container_s)),
        "container_all_s": container_s,
        "host_median_s": float(np.median(host_s)),
        "host_all_s": host_s,
    }


@contextlib.contextmanager
def host_server(repository: Path):
    """The same server on the host (this .venv), HTTP and gRPC on free ports: (http port, grpc port, pid)."""
    grpc_port = free_port()
    with server("ours", repository, "--grpc-port", str(grpc_port)) as (http_port, pid, _):
        yield http_port, grpc_port, pid


def run(image: str, repository: Path, seconds: float, rounds: int, repeats: int) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory(prefix="bench-container-") as scratch:
        mounted = Path(scratch) / "models"  # the export leaves model directories 0700; the container's
        shutil.copytree(repository, mounted)  # user needs them readable
        for entry in [mounted, *mounted.rglob("*")]:
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        results = {"image": image, "size": sizes(image)}
        results["start_to_ready"] = start_to_ready(image, mounted, repeats)
        results["throughput"] = throughput_pairs(image, mounted, seconds, rounds, (8, 64))
    size, ready = results["size"], results["start_to_ready"]
    text = (
        f"\n== container image {image}: {size['image_mb']:.0f} MB uncompressed (target <= 350), "
        f"its /opt/venv {size['venv_mb']:.0f} MB"
        + (f", base {size['base']} {size['base_mb']:.0f} MB" if "base_mb" in size else "")
        + f"\n== start to ready with the built-in models: container {ready['container_median_s']:.2f} s "
        f"(median of {repeats}: {', '.join(f'{t:.2f}' for t in ready['container_all_s'])}; target <= 1.0), "
        f"host process {ready['host_median_s']:.2f} s"
    )
    rows = [
        (
            r["transport"],
            r["concurrency"],
            f"{r['container']['requests_per_s']:.0f}",
            f"{r['container']['p99_ms']:.2f}",
            f"{r['host']['requests_per_s']:.0f}",
            f"{r['host']['p99_ms']:.2f}",
            r["container"]["errors"] + r["host"]["errors"],
            f"{r['ratio']:.2f}x",
            f"{r['container']['cpu_us_per_request']:.0f} / {r['host']['cpu_us_per_request']:.0f}",
            f"{r['cpu_ratio']:.2f}x",
        )
        for r in results["throughput"]
    ]
    text += table(
        f"container vs host: 1-row V2 infer on zoo-multiclass, {seconds:g} s each, {rounds} slices",
        (
            "transport",
            "conc",
            "container req/s",
            "p99 ms",
            "host req/s",
            "p99 ms",
            "errors",
            "req/s ratio",
            "server CPU µs/req (container / host)",
            "CPU ratio",
        ),
        rows,
    )
    return results, text


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc; the container's too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(run, pid: int):
    """`run(seconds)` that also reports the server's CPU time per answered request."""

    def call(seconds: float) -> dict:
        before = cpu_seconds(pid)
        result = run(seconds)
        result["cpu_s"] = cpu_seconds(pid) - before
        return result

    return call


def throughput_pairs(image: str, repository: Path, seconds: float, rounds: int, concurrencies) -> list[dict]:
    """Each case loads the container and the host server in `rounds` alternating slices. Throughput moves
    with whatever else the machine runs; the server's CPU time per request much less, so both are kept."""
    payload = bodies()["json"]
    runs = []
    with (
        container(image, repository) as (c_http, c_grpc, _, c_pid),
        host_server(repository) as (h_http, h_grpc, h_pid),
    ):
        for port in (c_http, h_http):  # warm-up
            load(port, *payload, 8, min(2.0, seconds))
        for concurrency in concurrencies:
            for transport in ("http", "grpc"):
                servers = {"container": (c_http, c_grpc, c_pid), "host": (h_http, h_grpc, h_pid)}
                slices: dict[str, list] = {name: [] for name in servers}
                for _ in range(rounds):
                    for name, (http_port, grpc_port, pid) in servers.items():
                        if transport == "http":
                            run = measured(lambda s, p=http_port, c=concurrency: load(p, *payload, c, s), pid)
                        else:
                            run = measured(lambda s, p=grpc_port, c=concurrency: grpc_load(p, c, s), pid)
                        slices[name].append(run(seconds / rounds))
                pair = {}
                for name, parts in slices.items():
                    pair[name] = medians(parts)
                    pair[name]["cpu_us_per_request"] = (
                        1e6 * sum(r["cpu_s"] for r in parts) / max(1, sum(r["requests"] for r in parts))
                    )
                ratio = pair["container"]["requests_per_s"] / pair["host"]["requests_per_s"]
                cpu_ratio = pair["container"]["cpu_us_per_request"] / pair["host"]["cpu_us_per_request"]
                runs.append(
                    {
                        "transport": transport,
                        "concurrency": concurrency,
                        **pair,
                        "ratio": ratio,
                        "cpu_ratio": cpu_ratio,
                    }
                )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.container", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--image", default=tools.IMAGE)
    parser.add_argument("--out", type=Path, default=Path("bench-results/container.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per server and case, in all")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices the load is cut into")
    args = parser.parse_args(argv)
    if not (args.repository / "zoo-multiclass" / "manifest.json").exists():
        print(f"error: no built-in models in {args.repository}: run `make all` first", file=sys.stderr)
        return 2
    try:
        if not tools.image_exists(args.image):
            print(f"error: image {args.image} not found: run `make image` first", file=sys.stderr)
            return 2
        results, text = run(
            args.image,
            args.repository,
            seconds=1.0 if args.quick else args.seconds,
            rounds=1 if args.quick else args.rounds,
            repeats=1 if args.quick else 5,
        )
    except tools.DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nall numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
