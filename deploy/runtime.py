"""deploy/runtime.json, the one place that says how the serving container runs: its user, the model
repository's path, the bind address, the HTTP and gRPC ports, the probe and metrics paths.

`make image` passes these values to deploy/Containerfile as build arguments (its own defaults must agree,
and a test checks they do); the Kubernetes manifests in deploy/kubernetes/ are checked against them by
tests/deploy/test_manifests.py, and the image is started with the manifests' own arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RUNTIME_JSON = Path(__file__).with_name("runtime.json")


@dataclass(frozen=True, kw_only=True)
class Runtime:
    image: str  # the image's name, without registry or tag
    user: int  # uid and gid the server runs as (never 0)
    repository: str  # where the model repository is mounted (KServe's convention: /mnt/models)
    host: str  # the server's bind address inside the container
    http_port: int
    grpc_port: int
    liveness: str  # HTTP paths of the probes and of the Prometheus metrics
    readiness: str
    metrics: str

    def server_args(self) -> list[str]:
        """The server's arguments as the Kubernetes manifests write them (the image's ENV says the same)."""
        return [
            f"--repository={self.repository}",
            f"--host={self.host}",
            f"--port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
        ]

    def build_args(self) -> dict[str, str]:
        """deploy/Containerfile's ARGs that carry these values."""
        return {
            "USER_ID": str(self.user),
            "HOST": self.host,
            "HTTP_PORT": str(self.http_port),
            "GRPC_PORT": str(self.grpc_port),
            "MODEL_REPOSITORY": self.repository,
        }

    def server_env(self) -> dict[str, str]:
        """The image's SERVE_* environment (every server flag reads SERVE_<FLAG>)."""
        return {
            "SERVE_REPOSITORY": self.repository,
            "SERVE_HOST": self.host,
            "SERVE_PORT": str(self.http_port),
            "SERVE_GRPC_PORT": str(self.grpc_port),
        }


def load_runtime(path: Path = RUNTIME_JSON) -> Runtime:
    runtime = Runtime(**json.loads(Path(path).read_text()))
    if runtime.user == 0:
        raise ValueError(f"{path}: the server's user must not be root (0)")
    return runtime
