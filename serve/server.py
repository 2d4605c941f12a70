"""The composition root: one DataPlane, served over HTTP (uvicorn, serve.http) and gRPC (grpc.aio,
serve.grpc) on one event loop, the two started together and drained together.

Start: gRPC binds its port, the models start loading on a background thread (readiness says so
meanwhile), the repository poll starts, then uvicorn binds HTTP's port; a port that cannot be bound
stops the start (exit status 2 from `main`). Stop (SIGTERM, SIGINT): both transports stop accepting at
the same moment, requests in flight finish (gRPC calls within SHUTDOWN_GRACE_S), then the poll stops and
a model load in progress completes first (exiting inside onnxruntime can crash the process).

`main` is what `python -m serve serve` runs: one server, or with --workers N a supervisor of N server
processes sharing the ports (serve.workers), each of which runs `main` as a worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from serve import descriptors
from serve.config import ServerConfig
from serve.dataplane import DataPlane
from serve.http.app import App
from serve.http.connection import uvicorn_config
from serve.payloads import PayloadLogError, check_writable, worker_path
from serve.workers import Supervisor, die_with_supervisor, reuse_port_socket

SHUTDOWN_GRACE_S = 30.0  # gRPC calls in flight at SIGTERM get this long to finish
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Server:
    def __init__(self, config: ServerConfig, log=print):
        self.config, self.log = config, log
        self.dataplane = DataPlane(config, log)
        self.app = App(self.dataplane)
        self.grpc = None  # serve.grpc.server.GrpcServer while running, when config.grpc_port is set
        self.grpc_stopping: asyncio.Future | None = None
        self.loader: threading.Thread | None = None
        self.http: Uvicorn | None = None  # built by `run`, from the configuration as it is then

    def run(self, sockets: list[socket.socket] | None = None, loop: str = "auto") -> bool:
        """Serve until SIGTERM or SIGINT (when run in the main thread) or `exit()`. False when a port
        could not be bound (the reason is on standard error)."""
        self.http = Uvicorn(self, uvicorn_config(self.app, self.config, loop))
        try:
            self.http.run(sockets=sockets)
        except SystemExit as exc:  # uvicorn exits 3 when a port cannot be bound; it said why
            return not exc.code
        return True

    @property
    def started(self) -> bool:
        """Both transports listen (the models may still be loading)."""
        return self.http is not None and self.http.started

    def exit(self) -> None:
        """Stop as SIGTERM does; from any thread."""
        if self.http is not None:
            self.http.should_exit = True

    async def start(self) -> None:
        """Everything but HTTP, which uvicorn starts next: gRPC listening (OSError when its port cannot
        be bound), the models loading, the poll."""
        if self.config.grpc_port:
            from serve.grpc.server import GrpcServer  # grpcio is imported only when gRPC is served

            cap = descriptors.connection_cap(self.config.max_connections)
            if cap < self.config.max_connections:
                self.log(
                    f"gRPC connections capped at {cap}, not {self.config.max_connections}: "
                    f"this process may open {descriptors.limit()} file descriptors"
                )
            self.grpc = GrpcServer(self.dataplane, cap)
            self.config.grpc_port = await self.grpc.start()
        self.loader = threading.Thread(target=self.dataplane.load, name="model-loader", daemon=True)
        self.loader.start()
        self.dataplane.start()

    def stop_accepting(self) -> None:
        """gRPC stops accepting at the moment HTTP does, not once HTTP has drained; its calls in flight
        get SHUTDOWN_GRACE_S to finish."""
        if self.grpc is not None and self.grpc_stopping is None:
            self.grpc_stopping = asyncio.ensure_future(self.grpc.stop(SHUTDOWN_GRACE_S))

    async def drain(self) -> None:
        """Once HTTP has drained: gRPC's calls finished, the poll stopped, no model load in progress."""
        self.stop_accepting()
        while self.loader is not None and self.loader.is_alive():  # never exit inside onnxruntime
            await asyncio.sleep(0.02)
        await self.dataplane.stop()
        if self.grpc_stopping is not None:
            await self.grpc_stopping


class Uvicorn(uvicorn.Server):
    """uvicorn's server, with the rest of `server` started before HTTP binds and drained with HTTP."""

    def __init__(self, server: Server, config: uvicorn.Config):
        super().__init__(config)
        self.root = server

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await self.root.start()
        except OSError as exc:  # gRPC's port: stop the way uvicorn does when HTTP's cannot be bound
            self.root.log(f"error: {exc}")
            logging.getLogger("uvicorn.error").error(exc)
            sys.exit(STARTUP_FAILURE)
        try:
            await super().startup(sockets)
        except BaseException:  # HTTP's port cannot be bound: uvicorn exits
            await self.root.drain()
            raise

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.root.stop_accepting()
        await super().shutdown(sockets)  # HTTP: stop accepting, let requests in flight finish
        if not self.force_exit:  # a second Ctrl-C
            await self.root.drain()


def main(
    config: ServerConfig,
    *,
    workers: int = 1,
    argv: list[str] = (),
    worker: int | None = None,
    runtime_dir: Path | None = None,
    log=print,
) -> int:
    """Serve `config` until SIGTERM or SIGINT; the exit status (2: a port cannot be bound). `workers` > 1
    runs a supervisor that starts `python -m serve <argv>` as worker 0 … N-1 (`worker`, with the
    supervisor's `runtime_dir`)."""
    descriptors.raise_limit()  # connections are file descriptors: take what the hard limit allows
    payloads = config.payload_log
    if payloads.path is not None:
        if worker is not None:  # rotation is not shared between processes: each worker has its own file
            payloads.path = worker_path(payloads.path, worker)
        try:
            check_writable(worker_path(payloads.path, 0) if workers > 1 and worker is None else payloads.path)
        except PayloadLogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if worker is None:
        log(banner(config, workers))
        if payloads.path is not None:
            several = f" (one file per worker: {worker_path(payloads.path, 0).name} …)" if workers > 1 else ""
            log(f"payload log: {payloads.sample:.0%} of inference requests to {payloads.path}{several}")
    if workers > 1 and worker is None:
        return Supervisor(config, workers, argv, log=log).run()
    sockets = None
    if worker is not None:  # one of several processes on the same ports
        die_with_supervisor()
        config.reuse_port, config.control_file = True, runtime_dir / "unloaded.json"
        sockets = [reuse_port_socket(config.host, config.port)]
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal with the handler that was
    # installed before it ran; with this one the process then exits 0 instead of dying by the signal.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    if not Server(config, log).run(sockets, loop=event_loop()):
        return 2
    log("stopped")
    return 0


def banner(config: ServerConfig, workers: int) -> str:
    exposure = "loopback only" if config.host in LOOPBACK else "ALL callers on that address"
    grpc = f" and grpc://{config.host}:{config.grpc_port}" if config.grpc_port else ""
    several = f", {workers} workers" if workers > 1 else ""
    return (
        f"serving {config.repository} on http://{config.host}:{config.port}{grpc} "
        f"({exposure}; no authentication{several})"
    )


def event_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
