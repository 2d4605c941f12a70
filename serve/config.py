"""The server's configuration: one dataclass, filled from the command line (serve/__main__.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serve.batching import BatchingConfig
from serve.payloads import PayloadLogConfig


@dataclass(kw_only=True)
class ServerConfig:
    repository: Path = Path("models")  # the model repository to serve
    host: str = "127.0.0.1"  # bind address; anything else exposes an unauthenticated server
    port: int = 8000  # HTTP
    grpc_port: int = 8001  # gRPC (Open Inference Protocol, Triton's service); 0: no gRPC
    max_body_bytes: int = 64 * 1024 * 1024  # larger bodies (and gRPC messages) are refused
    max_rows: int = 65536  # rows per request
    threads: int = 1  # onnxruntime intra-op threads per model version
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    warmup: bool = True  # run every batch size once before a loaded version is ready (serve/warmup.py)
    payload_log: PayloadLogConfig = field(default_factory=PayloadLogConfig)  # requests and responses logged
    poll_s: float = 2.0  # look for new, changed and removed models this often; 0: only at start and on load
    idle_timeout_s: float = 15.0  # a connection silent this long is closed (also before its first request)
    header_timeout_s: float = 10.0  # request headers must arrive within this, else 408
    body_timeout_s: float = 30.0  # each piece of a body must arrive within this, else 408
    max_header_bytes: int = 64 * 1024  # else 431
    max_connections: int = 1024  # beyond this, new connections get 503
    reuse_port: bool = False  # SO_REUSEPORT: one of several worker processes sharing the ports
    control_file: Path | None = None  # workers: explicit unloads shared between them (see serve/lifecycle.py)
