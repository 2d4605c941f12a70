"""`--workers N`: N server processes on the same HTTP and gRPC ports, each with its own onnxruntime
sessions, batching queues and repository poll (so a published version reaches every worker).

The ports are shared with SO_REUSEPORT: every worker listens on its own socket and the kernel spreads new
connections over them. This process supervises: it holds the ports first (bound, not listening, so a port
that someone else holds fails here at once, and port 0 picks one port for all), starts the workers
(`python -m serve serve ... --worker k`) in their own session, relays their output prefixed `worker k:`,
says `ready` once every worker has, restarts a worker that dies after it was ready, and on SIGTERM or
SIGINT sends SIGTERM to every worker and waits while they drain. Any worker's /metrics adds up all workers
(prometheus-client's multiprocess mode); unloads are shared between workers (serve/lifecycle.py). Both
through files in a temporary directory that lives as long as the supervisor.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from serve.config import ServerConfig

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT (not listening yet)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def die_with_supervisor() -> None:
    """In a worker: get SIGTERM (and drain) when the supervisor dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the supervisor was already gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(self, config: ServerConfig, workers: int, argv: list[str], log=print):
        self.config, self.count, self.argv, self.log = config, workers, argv, log
        self.stopping = threading.Event()
        self.lock = threading.RLock()  # also taken by the signal handler, which may interrupt a holder
        self.processes: dict[int, subprocess.Popen] = {}
        self.reports: dict[int, str] = {}  # worker → its "ready"/"NOT ready" line, once it said it
        self.announced = False

    def run(self) -> int:
        try:
            held = [reuse_port_socket(self.config.host, self.config.port)]
            if self.config.grpc_port:
                held.append(reuse_port_socket(self.config.host, self.config.grpc_port))
        except OSError as exc:
            print(f"error: cannot listen on {self.config.host}: {exc.strerror}", file=sys.stderr)
            return 2
        self.ports = [s.getsockname()[1] for s in held]
        self.runtime = Path(tempfile.mkdtemp(prefix="serve-workers-"))
        (self.runtime / "metrics").mkdir()
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, self.stop)
        try:
            for k in range(self.count):
                self.start(k)
            return self.watch()
        finally:
            for sock in held:
                sock.close()
            shutil.rmtree(self.runtime, ignore_errors=True)

    def start(self, k: int) -> None:
        grpc_port = self.ports[1] if len(self.ports) > 1 else 0
        command = [sys.executable, "-m", "serve", *self.argv]
        command += ["--port", str(self.ports[0]), "--grpc-port", str(grpc_port)]
        command += ["--worker", str(k), "--runtime-dir", str(self.runtime)]
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.runtime / "metrics")}
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only, which passes it on
        )
        with self.lock:
            self.processes[k] = process
        threading.Thread(target=self.relay, args=(k, process), daemon=True).start()

    def relay(self, k: int, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.log(f"worker {k}: {line.rstrip()}")
            if line.startswith(("ready", "NOT ready")):
                with self.lock:
                    self.reports[k] = line.strip()
                    self.announce()

    def announce(self) -> None:
        if self.announced or len(self.reports) < self.count:
            return
        self.announced = True
        refused = [f"worker {k}: {r}" for k, r in sorted(self.reports.items()) if not r.startswith("ready")]
        self.log("NOT ready: " + "; ".join(refused) if refused else f"ready: {self.count} workers")

    def stop(self, *_) -> None:
        self.stopping.set()
        with self.lock:
            for process in self.processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

    def watch(self) -> int:
        """Restart workers that die after they were ready; on stop, wait for every worker."""
        from prometheus_client.multiprocess import mark_process_dead

        while not self.stopping.is_set():
            time.sleep(0.2)
            for k, process in list(self.processes.items()):
                code = process.poll()
                if code is None or self.stopping.is_set():
                    continue
                mark_process_dead(process.pid, str(self.runtime / "metrics"))
                if k not in self.reports:
                    self.log(f"error: worker {k} exited ({code}) before it was ready; stopping")
                    self.stop()
                    self.wait()
                    return 2
                self.log(f"worker {k} exited ({code}); starting it again")
                self.start(k)
        return self.wait()

    def wait(self) -> int:
        codes = [process.wait() for process in self.processes.values()]
        self.log("stopped")
        return 0 if all(code == 0 for code in codes) else 1
