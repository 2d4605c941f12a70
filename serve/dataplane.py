"""What both transports do, in one place: health, server and model metadata (V2, and V1's body), the
repository index and model control, inference through the served versions' batching queues, and the
request metrics. serve/http/ and serve/grpc/ only turn their wire formats into these calls and back
(with the shared checks of serve/request.py) and map the named errors of serve/errors.py to their own
status codes; serve/server.py builds one DataPlane and hands it to both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from contract.repository import PLATFORM
from serve.config import ServerConfig
from serve.errors import BadRequest, ServeError, Unavailable
from serve.lifecycle import Lifecycle
from serve.metrics import Metrics
from serve.repository import Repository, Served

SERVER_NAME = "tabular-deploy"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
METRICS_REFRESH_S = 0.25


class DataPlane:
    def __init__(self, config: ServerConfig, log=print):
        self.config, self.log = config, log
        self.metrics = Metrics()
        self.repository = Repository(Path(config.repository), config.threads, config.batching, self.metrics)
        self.lifecycle = Lifecycle(self.repository, config.poll_s, log, config.control_file)
        self.refresher: asyncio.Task | None = None

    def start(self) -> None:
        """Background work on the event loop: the repository poll and, with several workers, copying
        this worker's queue lengths into the shared metrics a few times a second."""
        self.lifecycle.start()
        if self.metrics.multiprocess:
            self.refresher = asyncio.create_task(self.refresh_metrics())

    async def stop(self) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
        await self.lifecycle.stop()

    async def refresh_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_REFRESH_S)
            self.metrics.refresh()

    def load(self) -> None:
        """Read the whole repository once (blocking; the server runs it on a thread at startup)."""
        self.repository.load_all(self.log)
        self.metrics.ready.set(int(self.repository.ready))
        state = "ready" if self.repository.ready else "NOT ready"
        self.log(
            f"{state}: {len(self.repository.models)} model(s) served, {len(self.repository.failed)} refused"
        )

    # -- health and metadata -----------------------------------------------------------------------
    def not_ready_reason(self) -> str | None:
        repo = self.repository
        if repo.ready:
            return None
        if repo.loading:
            return "not ready: loading models"
        if repo.failed:
            return "not ready: refused " + "; ".join(f"{n}: {r}" for n, r in sorted(repo.failed.items()))
        return f"not ready: no model in {repo.path}"

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    def served(self, name: str, version: str | None = None) -> Served:
        """The version that answers (NotFound / Unavailable with the reason otherwise)."""
        return self.repository.get(name, version or None)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.served(name, version)
        except ServeError:
            return False
        return True

    def model_metadata(self, name: str, version: str | None = None) -> dict:
        model = self.served(name, version).model
        versions = sorted(self.repository.states[name].versions, key=int)
        manifest = model.manifest
        return {
            "name": model.name,
            "versions": versions,  # every version served now
            "platform": PLATFORM,
            "inputs": manifest["inputs"],
            "outputs": manifest["outputs"],
        }

    def v1_metadata(self, name: str) -> dict:
        """KServe V1's model metadata: the default version, its task, feature and output names."""
        model = self.served(name).model
        manifest = model.manifest
        return {
            "name": model.name,
            "ready": True,
            "version": model.version,
            "task": manifest["task"],
            "features": [f["name"] for f in model.features],
            "class_names": manifest["class_names"],
            "target_names": manifest["target_names"],
        }

    # -- inference ---------------------------------------------------------------------------------------
    async def infer(self, served: Served, features: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of `served` for checked features, through its batching queue."""
        return await served.batcher.submit(features)

    def record(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one request of either transport; a model name that is not in the repository is counted
        as "(unknown)", so clients, who choose names freely, cannot grow the label set."""
        if model and model not in self.repository.states:
            model = "(unknown)"
        self.metrics.record(model, endpoint, status, seconds)

    # -- the repository --------------------------------------------------------------------------------
    def index(self, ready_only: bool = False) -> list[dict]:
        return self.repository.index(ready_only)

    async def load_model(self, name: str, parameters: list[str]) -> None:
        check_control_parameters(parameters)
        if self.repository.loading:
            raise Unavailable("the server is still loading its models")
        await self.lifecycle.load(name)

    async def unload_model(self, name: str, parameters: list[str]) -> None:
        check_control_parameters(parameters)
        if self.repository.loading:
            raise Unavailable("the server is still loading its models")
        await self.lifecycle.unload(name)


def check_control_parameters(names: list[str]) -> None:
    """Triton's load/unload parameters: `unload_dependents` is accepted (there are no ensembles here,
    so no dependents); config and file overrides are not supported."""
    unsupported = sorted(set(map(str, names)) - {"unload_dependents"})
    if unsupported:
        raise BadRequest(f"model control parameters are not supported (got {', '.join(unsupported)})"[:300])
