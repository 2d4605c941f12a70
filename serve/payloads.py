"""Payload logs (`--payload-log PATH`): each sampled inference request and its response written as two
CloudEvents, one JSON line each, in the shape KServe's inference logger sends them.

A request's path does one thing: `offer` draws the sample and puts a reference to what was decoded and
answered on a bounded queue. A background thread wakes every 20 ms, takes what is queued, builds the events
and appends them to PATH, rotated by size into PATH.1 … PATH.N (`RotatingFile`). When the writer falls
behind (a slow disk) the queue fills and new entries are dropped; when a write fails (a full disk, an I/O
error) its entries are dropped and cut back out of the file; both are counted in
`payload_log_dropped_total{reason="queue_full"|"write_error"}`. A request is never delayed or failed by
its payload log.

The events (CloudEvents 1.0, structured JSON, as KServe's logger's `ce-` headers and body):
- `specversion` "1.0", `id` (a UUID shared by the request and its response), `type`
  `org.kubeflow.serving.inference.request` / `org.kubeflow.serving.inference.response`, `source` (the
  server's address the request came to: http://host:port/ or grpc://host:port/), `time` (when the request
  was decoded; when the answer was ready), `datacontenttype` application/json;
- extension attributes: `inferenceservicename` (the model's name, as KServe names the service that
  serves it), `modelversion`, `endpoint` (v2_infer, v1_predict, grpc_infer: the metrics' label; KServe's
  is its default/canary split), `component` "predictor";
- `data`: the request as decoded, in V2 JSON (`features`, [rows, n_features], FP32, null for a missing
  value; its `id` when it had one), and the response's outputs in V2 JSON (those the client asked for).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from contract.repository import INPUT_NAME

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
DROP_REASONS = ("queue_full", "write_error")
WRITE_EVERY_S = 0.02  # the writer wakes this often and writes what waits (not once per request)
WRITES_AT_ONCE = 64  # entries joined into one write (the GIL is let go at each write)
CLOSE_WAIT_S = 5.0  # at shutdown, what is queued gets this long to be written


@dataclass(kw_only=True)
class PayloadLogConfig:
    path: Path | None = None  # the JSON lines file; None: no payload log
    sample: float = 1.0  # share of inference requests logged, 0 to 1
    max_bytes: int = 64 * 1024 * 1024  # the file is rotated before it grows past this
    backups: int = 3  # rotated files kept: PATH.1 (the newest) … PATH.N
    queue: int = 1024  # requests waiting for the writer; more are dropped (and counted)


class PayloadLogError(Exception):
    """The payload log cannot be written where it was asked for."""


@dataclass(frozen=True)
class Entry:
    """One sampled request, as the request path leaves it: references, nothing built yet."""

    model: object  # the serve.model.Model that answered (its name, version and output datatypes)
    endpoint: str  # the metrics' endpoint label: v2_infer, v1_predict, grpc_infer
    request_id: str | None  # the client's own id, when it sent one
    features: np.ndarray  # (rows, n_features) float32, as decoded
    results: dict[str, np.ndarray]  # every output the model answered
    outputs: list[str] | None  # those the client asked for, in its order (None: all)
    received: float  # time.time() when decoded
    answered: float  # time.time() when the outputs were ready


class RotatingFile:
    """PATH, rotated by size into PATH.1 (the newest) … PATH.N as logging.handlers.RotatingFileHandler
    names them, and written whole requests at a time: a write the disk refuses (full, an I/O error) is
    cut back out of the file, so the file holds whole events only. (The standard library's handler, tried
    first, leaves a partial line on a full disk and writes its buffered rest later, into the next line.)"""

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self.file = self.open()

    def write(self, chunks: list[bytes]) -> int:
        """Append the chunks (each one request's events) in as few writes as fit, rotating first where
        the next would take the file past max_bytes; how many were written (the rest the disk refused,
        and nothing of them stays in the file)."""
        done = 0
        while done < len(chunks):
            try:
                end = self.make_room(len(chunks[done]))
            except OSError:
                return done
            size, upto = len(chunks[done]), done + 1
            while upto < len(chunks) and end + size + len(chunks[upto]) <= self.max_bytes:
                size, upto = size + len(chunks[upto]), upto + 1
            if not self.append(b"".join(chunks[done:upto]), end):
                return done
            done = upto
        return done

    def make_room(self, size: int) -> int:
        """Rotate when `size` more bytes would take the file past max_bytes; the file's size then."""
        if self.file.closed:  # a rotation failed half-way
            self.file = self.open()
        end = self.file.seek(0, os.SEEK_END)  # 0 for /dev/null, /dev/full: never rotated
        if end and end + size > self.max_bytes:
            self.rotate()
            return 0
        return end

    def append(self, data: bytes, end: int) -> bool:
        """Write `data` at `end`, all of it or (cut back to `end`) none."""
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may take part of it
                view = view[self.file.write(view) :]
        except OSError:
            with contextlib.suppress(OSError):
                self.file.truncate(end)
            return False
        return True

    def rotate(self) -> None:
        self.file.close()
        for k in range(self.backups - 1, 0, -1):
            older = Path(f"{self.path}.{k}")
            if older.exists():
                os.replace(older, f"{self.path}.{k + 1}")
        os.replace(self.path, f"{self.path}.1")
        self.file = self.open()

    def open(self):
        return open(self.path, "ab", buffering=0)  # unbuffered: a refused write is refused whole, at once

    def close(self) -> None:
        self.file.close()


class PayloadLog:
    def __init__(self, config: PayloadLogConfig, metrics, source=lambda endpoint: ""):
        """Open `config.path` for appending (PayloadLogError when that fails) and start the writer.
        `source(endpoint)` is the server's address that endpoint's requests come to."""
        self.config, self.source = config, source
        self.written = metrics.payloads_written
        self.dropped = {reason: metrics.payloads_dropped.labels(reason) for reason in DROP_REASONS}
        check_writable(Path(config.path))
        self.writer = RotatingFile(Path(config.path), config.max_bytes, config.backups)
        # Only the event loop appends and only the writer takes: deque's append and popleft are atomic, so
        # a request neither takes a lock nor wakes the writer (a queue.Queue did both: half the throughput).
        self.pending: deque[Entry] = deque()
        # Event ids are UUIDs, random per process, whose last 12 digits count (uuid4 per event cost 3 µs)
        self.ids, self.count = str(uuid.uuid4())[:24], itertools.count()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.write_forever, name="payload-log", daemon=True)
        self.thread.start()

    # -- the request path -----------------------------------------------------------------------------
    def offer(self, entry: Entry) -> None:
        """Queue `entry` if it is sampled; drop it (counted) when the writer is behind. Never blocks."""
        if self.config.sample < 1.0 and random.random() >= self.config.sample:
            return
        if len(self.pending) >= self.config.queue:
            self.dropped["queue_full"].inc()
            return
        self.pending.append(entry)

    # -- the writer thread ----------------------------------------------------------------------------
    def write_forever(self) -> None:
        while True:
            stopping = self.stopping.wait(WRITE_EVERY_S)
            while self.pending:
                self.write([self.pending.popleft() for _ in range(min(len(self.pending), WRITES_AT_ONCE))])
            if stopping:
                return

    def write(self, entries: list[Entry]) -> None:
        try:
            written = self.writer.write([self.events(e) for e in entries])
        except Exception:  # a defect of ours: never the request's problem; said, and counted as a failure
            traceback.print_exc(file=sys.stderr)
            written = 0
        self.written.inc(written)
        if written < len(entries):
            self.dropped["write_error"].inc(len(entries) - written)

    def events(self, entry: Entry) -> bytes:
        """The request's and the response's CloudEvents, one JSON line each (each line ends in \\n)."""
        model = entry.model
        common = {
            "specversion": "1.0",
            "id": f"{self.ids}{next(self.count):012x}",
            "source": self.source(entry.endpoint),
            "datacontenttype": "application/json",
            "inferenceservicename": model.name,
            "modelversion": model.version,
            "endpoint": entry.endpoint,
            "component": "predictor",
        }
        request = {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "datatype": "FP32",
                    "shape": list(entry.features.shape),
                    "data": np.ascontiguousarray(entry.features).reshape(-1),  # NaN is written null
                }
            ]
        }
        response = {
            "model_name": model.name,
            "model_version": model.version,
            "outputs": [
                {
                    "name": name,
                    "datatype": model.outputs[name]["datatype"],
                    "shape": list(entry.results[name].shape),
                    "data": np.ascontiguousarray(entry.results[name]).reshape(-1),
                }
                for name in entry.outputs or model.output_names
            ],
        }
        if entry.request_id is not None:
            request["id"] = response["id"] = entry.request_id
        lines = (
            {**common, "type": REQUEST_TYPE, "time": rfc3339(entry.received), "data": request},
            {**common, "type": RESPONSE_TYPE, "time": rfc3339(entry.answered), "data": response},
        )
        return b"".join(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for line in lines)

    def close(self) -> None:
        """Write what is queued (within CLOSE_WAIT_S), then close the file."""
        self.stopping.set()
        self.thread.join(CLOSE_WAIT_S)
        self.writer.close()


def rfc3339(seconds: float) -> str:
    """UTC, to the microsecond: 2026-12-02T23:47:54.674755Z."""
    whole = int(seconds)
    return f"{utc_second(whole)}.{int((seconds - whole) * 1e6):06d}Z"


@functools.lru_cache(maxsize=4)  # the events of one batch fall in a second or two
def utc_second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def check_writable(path: Path) -> None:
    """PayloadLogError, with the reason, when `path` cannot be opened for appending."""
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise PayloadLogError(f"cannot write the payload log {path}: {exc.strerror}") from None


def worker_path(path: Path, worker: int) -> Path:
    """Worker k's own payload log under --workers: PATH's name with .worker<k> before its suffix."""
    path = Path(path)
    return path.with_name(f"{path.stem}.worker{worker}{path.suffix}")
