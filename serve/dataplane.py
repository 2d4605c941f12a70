"""What both transports do, in one place: health, server and model metadata (V2, and V1's body), Triton's
model configuration and statistics extensions, the repository index and model control, inference through
the served versions' batching queues (offered to the payload log, serve/payloads.py, when there is one),
and the request metrics and inference statistics. serve/http/ and serve/grpc/ only turn their wire
formats into these calls and back (with the shared checks of serve/request.py) and map the named errors of
serve/errors.py to their own status codes; serve/server.py builds one DataPlane and hands it to both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from contract.repository import MAX_NAME_LENGTH, PLATFORM
from contract.schema import SCHEMA_PARAMETER
from serve.config import ServerConfig
from serve.errors import QUOTE_LIMIT, BadRequest, ServeError, Unavailable
from serve.lifecycle import Lifecycle
from serve.metrics import Metrics
from serve.payloads import Entry, PayloadLog
from serve.repository import Repository, Served
from serve.triton import ModelConfig, ModelStatisticsResponse

SERVER_NAME = "tabular-deploy"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics"]
METRICS_REFRESH_S = 0.25


class DataPlane:
    def __init__(self, config: ServerConfig, log=print):
        self.config, self.log = config, log
        self.metrics = Metrics()
        self.repository = Repository(
            Path(config.repository),
            config.threads,
            config.batching,
            self.metrics,
            warmup=config.warmup,
            log=log,
        )
        self.lifecycle = Lifecycle(self.repository, config.poll_s, log, config.control_file)
        self.refresher: asyncio.Task | None = None
        self.payloads: PayloadLog | None = None  # the payload log's writer, with config.payload_log.path
        if config.payload_log.path is not None:  # PayloadLogError when it cannot be written
            self.payloads = PayloadLog(config.payload_log, self.metrics, self.source)

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
        if self.payloads is not None:  # after the transports drained: what they answered is queued
            await asyncio.get_running_loop().run_in_executor(None, self.payloads.close)

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
            # the input schema (contract.schema) as JSON text: the protocol's parameters are scalars
            "parameters": {SCHEMA_PARAMETER: model.schema_json},
        }

    def model_config(self, name: str, version: str | None = None):
        """Triton's ModelConfig of a served version: config.pbtxt as the repository holds it, with the
        version's input schema added to its parameters (as JSON text, under "schema")."""
        served = self.served(name, version)
        config = ModelConfig()
        recorded = self.repository.states[name].config
        if recorded is not None:
            config.CopyFrom(recorded)
        else:  # a model directory without config.pbtxt: what Triton would need at least
            config.name, config.platform = name, PLATFORM
        config.parameters[SCHEMA_PARAMETER].string_value = served.model.schema_json
        return config

    def statistics(self, name: str = "", version: str = ""):
        """Triton's ModelStatisticsResponse: every served version of every model (no name), of one model,
        or one version."""
        if version and not name:
            raise BadRequest("statistics of a version need the model's name")
        if name and version:
            chosen = [(name, version, self.served(name, version))]
        elif name:
            self.served(name)
            chosen = [(name, v, s) for v, s in self.repository.states[name].versions.items()]
        else:
            chosen = [
                (n, v, s) for n, state in self.repository.states.items() for v, s in state.versions.items()
            ]
        chosen.sort(key=lambda item: (item[0], int(item[1])))
        stats = [served.batcher.statistics.to_dict(n, v) for n, v, served in chosen]
        return json_format.ParseDict({"model_stats": stats}, ModelStatisticsResponse())

    def v1_metadata(self, name: str) -> dict:
        """KServe V1's model metadata: the default version, its task, feature and output names, and its
        input schema (contract.schema)."""
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
            "schema": model.schema,
        }

    # -- inference ---------------------------------------------------------------------------------------
    async def infer(
        self,
        served: Served,
        features: np.ndarray,
        endpoint: str,
        request_id: str | None = None,
        outputs: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every output of `served` for checked features, through its batching queue; offered to the
        payload log (when there is one) with the endpoint, the client's id and the outputs it asked for."""
        if self.payloads is None:
            return await served.batcher.submit(features)
        received = time.time()
        results = await served.batcher.submit(features)
        entry = Entry(served.model, endpoint, request_id, features, results, outputs, received, time.time())
        self.payloads.offer(entry)
        return results

    def source(self, endpoint: str) -> str:
        """The CloudEvents `source` of a request to `endpoint`: the server's address it came to."""
        if endpoint.startswith("grpc"):
            return f"grpc://{self.config.host}:{self.config.grpc_port}/"
        return f"http://{self.config.host}:{self.config.port}/"

    @contextlib.contextmanager
    def counting(self, served: Served):
        """Count one inference request to `served` in its statistics, from decoding to the encoded answer:
        a success, or a failure whatever the cause (a refused input, a full queue, a client gone)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            served.batcher.statistics.finished(False, time.perf_counter() - start)
            raise
        served.batcher.statistics.finished(True, time.perf_counter() - start)

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
        check_control_name(name)
        check_control_parameters(parameters)
        if self.repository.loading:
            raise Unavailable("the server is still loading its models")
        await self.lifecycle.load(name)

    async def unload_model(self, name: str, parameters: list[str]) -> None:
        check_control_name(name)
        check_control_parameters(parameters)
        if self.repository.loading:
            raise Unavailable("the server is still loading its models")
        await self.lifecycle.unload(name)


def check_control_name(name: str) -> None:
    """A name longer than a directory name can be is the client's mistake (400), said as such."""
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"model name of {len(name):,} characters is over the limit of {MAX_NAME_LENGTH}")


def check_control_parameters(names: list[str]) -> None:
    """Triton's load/unload parameters: `unload_dependents` is accepted (there are no ensembles here,
    so no dependents); config and file overrides are not supported."""
    unsupported = sorted(set(map(str, names)) - {"unload_dependents"})
    if unsupported:
        got = ", ".join(unsupported)
        got = got if len(got) <= QUOTE_LIMIT else f"{got[:QUOTE_LIMIT]}…"
        raise BadRequest(f"model control parameters are not supported (got {got})")
