"""HTTP wiring: a plain ASGI application speaking the Open Inference Protocol (KServe V2) and KServe V1.

Each request goes route → read body (within limits) → decode → validate → batch/run → encode. Named
errors from `serve.errors` become `{"error": ...}` with their status; anything unexpected is logged here
and answered 500 without a stack trace (no client input reaches that path by design).
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from serve import protocol
from serve.batching import Batcher, BatchingConfig
from serve.errors import (
    ClientGone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServeError,
    Unavailable,
)
from serve.metrics import Metrics
from serve.repository import Repository

SERVER_NAME = "tabular-deploy"
SERVER_VERSION = "0.1.0"
JSON = [(b"content-type", b"application/json")]


@dataclass
class ServerConfig:
    repository: Path = Path("models")  # the model repository to serve
    host: str = "127.0.0.1"  # bind address; anything else exposes an unauthenticated server
    port: int = 8000
    max_body_bytes: int = 64 * 1024 * 1024  # larger bodies get 413
    max_rows: int = 65536  # rows per request
    threads: int = 1  # onnxruntime intra-op threads per model
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    idle_timeout_s: float = 15.0  # a connection silent this long is closed (also before its first request)
    header_timeout_s: float = 10.0  # request headers must arrive within this, else 408
    body_timeout_s: float = 30.0  # each piece of a body must arrive within this, else 408
    max_header_bytes: int = 64 * 1024  # else 431
    max_connections: int = 1024  # beyond this, new connections get 503


MODEL = r"(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
ROUTES = [  # (method, pattern on the raw path, handler, endpoint label for metrics)
    ("GET", r"/v2/health/live", "live", "health"),
    ("GET", r"/v2/health/ready", "ready", "health"),
    ("GET", r"/v2", "server_metadata", "metadata"),
    ("GET", rf"/v2/models/{MODEL}/ready", "model_ready", "health"),
    ("GET", rf"/v2/models/{MODEL}", "model_metadata", "metadata"),
    ("POST", rf"/v2/models/{MODEL}/infer", "infer", "v2_infer"),
    ("POST", r"/v2/repository/index", "repository_index", "metadata"),
    ("GET", r"/v1/models/(?P<name>[^/:]+)", "v1_metadata", "metadata"),
    ("POST", r"/v1/models/(?P<name>[^/:]+):predict", "v1_predict", "v1_predict"),
    ("GET", r"/metrics", "metrics_text", "metrics"),
]
COMPILED = [(method, re.compile(pattern), handler, endpoint) for method, pattern, handler, endpoint in ROUTES]


class App:
    def __init__(self, config: ServerConfig, log=print):
        self.config, self.log = config, log
        self.repository = Repository(Path(config.repository), threads=config.threads)
        self.metrics = Metrics()
        self.batchers: dict[str, Batcher] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> None:
        self.repository.load_all(self.log)
        self.metrics.ready.set(int(self.repository.ready))
        state = "ready" if self.repository.ready else "NOT ready"
        self.log(
            f"{state}: {len(self.repository.models)} model(s) served, {len(self.repository.failed)} refused"
        )

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                threading.Thread(target=self.load, name="model-loader", daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- the request path --------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        if scope["type"] != "http":
            return None
        start = time.perf_counter()
        model_label, endpoint = "", "unknown"
        try:
            handler, params, endpoint = route(
                scope["method"], scope.get("raw_path") or scope["path"].encode()
            )
            model_label = params.get("name", "")
            status, body, headers = await getattr(self, handler)(scope, receive, params)
        except ServeError as exc:
            status, body, headers = exc.status, protocol.encode_json({"error": exc.message}), JSON
            if status == 413:  # the rest of the body is not read: end the connection
                headers = [*JSON, (b"connection", b"close")]
        except Exception:  # a defect of ours, never a client's fault: log it, answer without details
            traceback.print_exc(file=sys.stderr)
            status, body, headers = 500, protocol.encode_json({"error": "internal server error"}), JSON
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        if model_label and model_label not in self.repository.models:
            model_label = "(unknown)"  # bound the label set: clients choose names freely
        self.metrics.record(model_label, endpoint, status, time.perf_counter() - start)
        return None

    async def read_body(self, scope, receive) -> bytes:
        limit = self.config.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"body of {int(value)} bytes is over the limit of {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()  # a stalled body is answered 408 by serve.connection
            if message["type"] == "http.disconnect":
                raise ClientGone("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def batcher(self, name: str, version: str | None) -> Batcher:
        model = self.repository.get(name, version)
        if name not in self.batchers:
            self.batchers[name] = Batcher(model, self.config.batching, self.metrics)
        return self.batchers[name]

    # -- handlers: (scope, receive, params) -> (status, body, headers) -----------------------------
    async def live(self, scope, receive, params):
        return 200, protocol.encode_json({"live": True}), JSON

    async def ready(self, scope, receive, params):
        if not self.repository.ready:
            raise Unavailable(self.not_ready_reason())
        return 200, protocol.encode_json({"ready": True}), JSON

    def not_ready_reason(self) -> str:
        repo = self.repository
        if repo.loading:
            return "not ready: loading models"
        if repo.failed:
            return "not ready: refused " + "; ".join(f"{n}: {r}" for n, r in sorted(repo.failed.items()))
        return f"not ready: no model in {repo.path}"

    async def server_metadata(self, scope, receive, params):
        body = {
            "name": SERVER_NAME,
            "version": SERVER_VERSION,
            "extensions": ["binary_tensor_data", "model_repository"],
        }
        return 200, protocol.encode_json(body), JSON

    async def model_ready(self, scope, receive, params):
        self.repository.get(params["name"], params.get("version"))
        return 200, protocol.encode_json({"name": params["name"], "ready": True}), JSON

    async def model_metadata(self, scope, receive, params):
        model = self.repository.get(params["name"], params.get("version"))
        manifest = model.manifest
        body = {
            "name": model.name,
            "versions": [model.version],
            "platform": "onnxruntime_onnx",
            "inputs": manifest["inputs"],
            "outputs": manifest["outputs"],
        }
        return 200, protocol.encode_json(body), JSON

    async def infer(self, scope, receive, params):
        batcher = self.batcher(params["name"], params.get("version"))
        body = await self.read_body(scope, receive)
        header_length = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"inference-header-content-length"),
            None,
        )
        request = protocol.decode_v2(body, header_length, batcher.model, self.config.max_rows)
        results = await batcher.submit(request.features)
        payload, headers = protocol.encode_v2(batcher.model, request, results)
        return 200, payload, [(k.encode(), v.encode()) for k, v in headers.items()]

    async def repository_index(self, scope, receive, params):
        await self.read_body(scope, receive)
        return 200, protocol.encode_json(self.repository.index()), JSON

    async def v1_metadata(self, scope, receive, params):
        model = self.repository.get(params["name"])
        manifest = model.manifest
        body = {
            "name": model.name,
            "ready": True,
            "version": model.version,
            "task": manifest["task"],
            "features": [f["name"] for f in model.features],
            "class_names": manifest["class_names"],
            "target_names": manifest["target_names"],
        }
        return 200, protocol.encode_json(body), JSON

    async def v1_predict(self, scope, receive, params):
        batcher = self.batcher(params["name"], None)
        body = await self.read_body(scope, receive)
        features = batcher.model.check_features(protocol.decode_v1(body, batcher.model, self.config.max_rows))
        results = await batcher.submit(features)
        return 200, protocol.encode_json({"predictions": batcher.model.describe(results)}), JSON

    async def metrics_text(self, scope, receive, params):
        return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


@functools.lru_cache(maxsize=4096)  # errors raise and are not cached; handlers only read `params`
def route(method: str, raw_path: bytes) -> tuple[str, dict, str]:
    """Handler name, unquoted path parameters, endpoint label. Parameters are matched on the raw path,
    so an encoded slash stays inside one segment (and then fails the model name check: 404)."""
    path = raw_path.decode("latin-1").split("?", 1)[0].rstrip("/") or "/"
    allowed = False
    for route_method, pattern, handler, endpoint in COMPILED:
        match = pattern.fullmatch(path)
        if match:
            if route_method != method:
                allowed = True
                continue
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            return handler, params, endpoint
    if allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {path[:200]}")
    raise NotFound(f"no such endpoint: {method} {path[:200]}")


def build_server(app: App, loop: str = "auto"):
    """The uvicorn server for `app`, with the guarded connection protocol and the configured limits."""
    import uvicorn

    from serve.connection import guarded_protocol

    config = app.config
    protocol_class = guarded_protocol(config.header_timeout_s, config.body_timeout_s, config.max_header_bytes)
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop=loop,
            http=protocol_class,
            lifespan="on",
            access_log=False,
            log_level="warning",
            server_header=False,
            date_header=False,
            backlog=2048,
            timeout_keep_alive=config.idle_timeout_s,
            proxy_headers=False,
            limit_concurrency=config.max_connections,
        )
    )
