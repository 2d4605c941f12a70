"""A real server on 127.0.0.1 and a free port, run in a background thread (`running`) or as a process of
its own (`start_server`), for the server tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from serve.server import Server
from tests import permissions

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(server: Server, wait_ready: bool = True):
    """Run `server` (HTTP, and gRPC when its config has a port) until the block ends; yields
    "127.0.0.1:port" of HTTP (gRPC's is then in server.config.grpc_port)."""
    port = free_port()
    server.config.port = port
    if server.config.grpc_port:  # never the fixed default: other servers may hold it
        server.config.grpc_port = free_port()
    thread = threading.Thread(target=server.run, kwargs={"loop": "asyncio"}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started or (wait_ready and server.dataplane.repository.loading):
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.exit()
        thread.join(10)


def request(
    address: str, method: str, path: str, body: bytes | str | dict | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of one request on a fresh connection."""
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    if isinstance(body, dict):
        body = json.dumps(body)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def json_request(address, method, path, body=None, headers=None) -> tuple[int, dict]:
    status, _, data = request(address, method, path, body, headers)
    return status, json.loads(data)


def start_server(
    repository: Path,
    *flags: str,
    nofile: int | None = None,
    lines: list[str] | None = None,
    unprivileged: bool = False,
) -> tuple[subprocess.Popen, int]:
    """`python -m serve serve` on a free HTTP port (gRPC as `flags` say), once it says it is ready;
    `nofile` caps its file descriptors (RLIMIT_NOFILE, soft and hard); `unprivileged` makes file modes
    bind it even when the tests run as root. Its output keeps being read (into `lines`), so a server that
    logs much never blocks on a full pipe."""
    port = free_port()
    limit = (nofile, nofile) if nofile else None
    drop = permissions.unprivileged() if unprivileged else None

    def before_exec():
        if limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        if drop:
            drop()

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
        preexec_fn=before_exec,
    )
    lines = [] if lines is None else lines
    for line in process.stdout:
        lines.append(line)
        if line.startswith(("ready", "NOT ready")):  # the models are read; HTTP may bind a moment later
            threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
            deadline = time.monotonic() + 20
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    return process, port
                time.sleep(0.02)
            break
    raise RuntimeError("server exited before it was ready:\n" + "".join(lines))


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
