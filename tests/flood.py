"""A connection flood on a gRPC port, as an attacker holds one: TCP connections kept open without a call.
A third send nothing, a third only the HTTP/2 preface, a third the preface and SETTINGS (and acknowledge
the server's), which is what an idle gRPC channel looks like on the wire.

`flooding(port, connections, processes)` runs the flood in `processes` child processes (each raises its
own file descriptor limit to the hard limit, so together they can hold more than one process may), and
yields a `Flood` that reports what they hold. With `reopen` a connection the server closes is opened
again (at most REOPEN_PER_S a second per process), so the server stays under attack; without it the test
can watch the server's timeouts close every one. Run alone: `python -m tests.flood PORT COUNT [reopen]`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame on stream 0
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
KINDS = ("silent", "preface", "idle channel")
REOPEN_PER_S = 500  # per process: the reopened connections end in TIME_WAIT, which holds a local port
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the local port at connect(), per destination
REPORT_S = 0.5
ROOT = Path(__file__).resolve().parents[1]


def raise_fd_limit() -> int:
    """This process's soft RLIMIT_NOFILE raised as far as the hard limit allows; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Holder:
    """One process's share of the flood (the child's side)."""

    def __init__(self, port: int, count: int, reopen: bool, source: str):
        self.port, self.count, self.reopen, self.source = port, count, reopen, source
        self.selector = selectors.DefaultSelector()
        self.kinds: dict[socket.socket, str] = {}
        self.connected = self.closed_by_server = self.reopened = self.failed = self.opened = 0
        self.waiting = 0  # closed connections not yet reopened

    def open(self, kind: str) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((self.source, 0))
        code = s.connect_ex(("127.0.0.1", self.port))
        if code not in (0, errno.EINPROGRESS):
            s.close()
            self.failed += 1
            self.waiting += 1
            return
        self.kinds[s] = kind
        self.selector.register(s, selectors.EVENT_WRITE, "connecting")

    def handle(self, s: socket.socket, state: str) -> None:
        kind = self.kinds[s]
        if state == "connecting":
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return self.drop(s, failed=True)
            self.connected += 1
            self.opened += 1
            with contextlib.suppress(OSError):
                s.send(b"" if kind == "silent" else PREFACE + (SETTINGS if kind == "idle channel" else b""))
            self.selector.modify(s, selectors.EVENT_READ, "open")
            return
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.connected -= 1
            self.closed_by_server += 1
            return self.drop(s)
        if kind == "idle channel" and b"\x00\x00\x04" in data[:32]:  # the server's SETTINGS: acknowledge
            with contextlib.suppress(OSError):
                s.send(SETTINGS_ACK)

    def drop(self, s: socket.socket, failed: bool = False) -> None:
        self.selector.unregister(s)
        del self.kinds[s]
        s.close()
        self.failed += failed
        self.waiting += 1

    def report(self) -> None:
        kinds = list(self.kinds.values())
        counts = {
            **{f"held {kind}": kinds.count(kind) for kind in KINDS},
            "held": len(self.kinds),
            "connected": self.connected,
            "opened": self.opened,
            "closed_by_server": self.closed_by_server,
            "reopened": self.reopened,
            "failed": self.failed,
        }
        print(json.dumps(counts), flush=True)

    def run(self) -> None:
        for k in range(self.count):
            self.open(KINDS[k % len(KINDS)])
            if k % 256 == 255:  # let the handshakes of the first ones proceed while opening the rest
                for key, _ in self.selector.select(0):
                    self.handle(key.fileobj, key.data)
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        next_report = budget_at = time.monotonic()
        budget = 0.0
        while not stop.is_set():
            for key, _ in self.selector.select(0.05):
                self.handle(key.fileobj, key.data)
            now = time.monotonic()
            if self.reopen and self.waiting:
                budget = min(REOPEN_PER_S, budget + (now - budget_at) * REOPEN_PER_S)
                while self.waiting and budget >= 1:
                    self.waiting -= 1
                    budget -= 1
                    self.reopened += 1
                    self.open(KINDS[self.reopened % len(KINDS)])
            budget_at = now
            if now >= next_report:
                self.report()
                next_report = now + REPORT_S
        self.report()


@dataclass
class Flood:
    processes: list[subprocess.Popen]
    latest: dict[int, dict] = field(default_factory=dict)  # process index → its last report
    limits: list[int] = field(default_factory=list)  # each process's file descriptor limit

    def follow(self, k: int, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.latest[k] = json.loads(line)

    def total(self, key: str) -> int:
        return sum(report.get(key, 0) for report in self.latest.values())


@contextlib.contextmanager
def flooding(port: int, connections: int, processes: int = 1, reopen: bool = False, timeout: float = 120):
    """Hold `connections` connections to `port` from `processes` processes until the block ends; the
    block starts once every connection is open (or refused) from the clients' side."""
    shares = [connections // processes + (k < connections % processes) for k in range(processes)]
    children = []
    for k, share in enumerate(shares):
        source = f"127.0.0.{2 + k}"  # its own local ports, so that TIME_WAIT of one share spares the others
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.flood", str(port), str(share), "1" if reopen else "0", source],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    flood = Flood(children)
    for k, child in enumerate(children):
        flood.limits.append(int(child.stdout.readline()))
        threading.Thread(target=flood.follow, args=(k, child), daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while len(flood.latest) < processes:  # a process reports once it has opened its share
            assert time.monotonic() < deadline, "the flood never started"
            time.sleep(0.05)
        yield flood
    finally:
        for child in children:
            with contextlib.suppress(OSError):
                child.stdin.close()
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(argv: list[str]) -> None:
    port, count, reopen, source = int(argv[0]), int(argv[1]), argv[2] == "1", argv[3]
    print(raise_fd_limit(), flush=True)
    Holder(port, count, reopen, source).run()


if __name__ == "__main__":
    main(sys.argv[1:])
