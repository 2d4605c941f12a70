"""A real server on 127.0.0.1 and a free port, run in a background thread, for the server tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time

from serve.server import Server


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
