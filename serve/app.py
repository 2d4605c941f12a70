"""HTTP wiring: a plain ASGI application speaking the Open Inference Protocol (KServe V2) and KServe V1.

Each request goes route → read body (within limits) → decode → validate → batch/run → encode. Named
errors from `serve.errors` become `{"error": ...}` with their status; anything unexpected is logged here
and answered 500 without a stack trace (no client input reaches that path by design). What is not HTTP
(models, versions, batching, health, model control) is serve.dataplane's, shared with gRPC, whose server
this application's lifespan starts and stops on the same event loop.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import threading
import time
import traceback
from urllib.parse import unquote

from serve import protocol
from serve.config import ServerConfig
from serve.dataplane import DataPlane
from serve.errors import (
    BadRequest,
    ClientGone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServeError,
    Unavailable,
)

JSON = [(b"content-type", b"application/json")]
SHUTDOWN_GRACE_S = 30.0  # gRPC calls in flight at SIGTERM get this long to finish

MODEL = r"(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
ROUTES = [  # (method, pattern on the raw path, handler, endpoint label for metrics)
    ("GET", r"/v2/health/live", "live", "health"),
    ("GET", r"/v2/health/ready", "ready", "health"),
    ("GET", r"/v2", "server_metadata", "metadata"),
    ("GET", rf"/v2/models/{MODEL}/ready", "model_ready", "health"),
    ("GET", rf"/v2/models/{MODEL}", "model_metadata", "metadata"),
    ("POST", rf"/v2/models/{MODEL}/infer", "infer", "v2_infer"),
    ("POST", r"/v2/repository/index", "repository_index", "metadata"),
    ("POST", r"/v2/repository/models/(?P<name>[^/]+)/load", "load_model", "repository"),
    ("POST", r"/v2/repository/models/(?P<name>[^/]+)/unload", "unload_model", "repository"),
    ("GET", r"/v1/models/(?P<name>[^/:]+)", "v1_metadata", "metadata"),
    ("POST", r"/v1/models/(?P<name>[^/:]+):predict", "v1_predict", "v1_predict"),
    ("GET", r"/metrics", "metrics_text", "metrics"),
]
COMPILED = [(method, re.compile(pattern), handler, endpoint) for method, pattern, handler, endpoint in ROUTES]


class App:
    def __init__(self, config: ServerConfig, log=print):
        self.config, self.log = config, log
        self.dataplane = DataPlane(config, log)
        self.repository, self.metrics = self.dataplane.repository, self.dataplane.metrics
        self.grpc = None  # serve.grpc_server.GrpcServer while running, when config.grpc_port is set
        self.grpc_stopping: asyncio.Task | None = None
        self.loader: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> None:
        self.dataplane.load()

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start_grpc()
                except OSError as exc:
                    self.log(f"error: {exc}")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.loader = threading.Thread(target=self.load, name="model-loader", daemon=True)
                self.loader.start()
                self.dataplane.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.begin_shutdown()
                while self.loader is not None and self.loader.is_alive():  # never exit inside onnxruntime
                    await asyncio.sleep(0.02)
                await self.dataplane.stop()
                if self.grpc_stopping is not None:
                    await self.grpc_stopping
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start_grpc(self) -> None:
        if not self.config.grpc_port:
            return
        from serve.grpc_server import GrpcServer  # grpcio is imported only when gRPC is served

        self.grpc = GrpcServer(self.dataplane)
        self.config.grpc_port = await self.grpc.start()

    def begin_shutdown(self) -> None:
        """Stop accepting gRPC calls at the same moment as HTTP connections; in-flight ones finish."""
        if self.grpc is not None and self.grpc_stopping is None:
            self.grpc_stopping = asyncio.ensure_future(self.grpc.stop(SHUTDOWN_GRACE_S))

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
        if model_label and model_label not in self.repository.states:
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

    # -- handlers: (scope, receive, params) -> (status, body, headers) -----------------------------
    async def live(self, scope, receive, params):
        return 200, protocol.encode_json({"live": True}), JSON

    async def ready(self, scope, receive, params):
        reason = self.dataplane.not_ready_reason()
        if reason:
            raise Unavailable(reason)
        return 200, protocol.encode_json({"ready": True}), JSON

    async def server_metadata(self, scope, receive, params):
        return 200, protocol.encode_json(self.dataplane.server_metadata()), JSON

    async def model_ready(self, scope, receive, params):
        self.dataplane.served(params["name"], params.get("version"))
        return 200, protocol.encode_json({"name": params["name"], "ready": True}), JSON

    async def model_metadata(self, scope, receive, params):
        body = self.dataplane.model_metadata(params["name"], params.get("version"))
        return 200, protocol.encode_json(body), JSON

    async def infer(self, scope, receive, params):
        served = self.dataplane.served(params["name"], params.get("version"))
        body = await self.read_body(scope, receive)
        header_length = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"inference-header-content-length"),
            None,
        )
        request = protocol.decode_v2(body, header_length, served.model, self.config.max_rows)
        results = await served.batcher.submit(request.features)
        payload, headers = protocol.encode_v2(served.model, request, results)
        return 200, payload, [(k.encode(), v.encode()) for k, v in headers.items()]

    async def repository_index(self, scope, receive, params):
        body = await self.read_body(scope, receive)
        options = protocol.load_json(body) if body.strip() else {}
        if not isinstance(options, dict):
            raise BadRequest("repository index request must be a JSON object")
        rows = self.dataplane.index(ready_only=options.get("ready") is True)
        return 200, protocol.encode_json(rows), JSON

    async def load_model(self, scope, receive, params):
        parameters = await self.control_parameters(scope, receive)
        await self.dataplane.load_model(params["name"], parameters)
        return 200, b"{}", JSON

    async def unload_model(self, scope, receive, params):
        parameters = await self.control_parameters(scope, receive)
        await self.dataplane.unload_model(params["name"], parameters)
        return 200, b"{}", JSON

    async def control_parameters(self, scope, receive) -> list[str]:
        """The names of the parameters of Triton's (optional) load/unload body."""
        body = await self.read_body(scope, receive)
        options = protocol.load_json(body) if body.strip() else {}
        parameters = options.get("parameters") or {} if isinstance(options, dict) else None
        if not isinstance(parameters, dict):
            raise BadRequest('model control request must be a JSON object, with "parameters" an object')
        return list(parameters)

    async def v1_metadata(self, scope, receive, params):
        model = self.dataplane.served(params["name"]).model
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
        served = self.dataplane.served(params["name"])
        body = await self.read_body(scope, receive)
        features = served.model.check_features(protocol.decode_v1(body, served.model, self.config.max_rows))
        results = await served.batcher.submit(features)
        return 200, protocol.encode_json({"predictions": served.model.describe(results)}), JSON

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

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            app.begin_shutdown()  # gRPC stops accepting together with HTTP, not after it has drained
            await super().shutdown(sockets)

    config = app.config
    protocol_class = guarded_protocol(config.header_timeout_s, config.body_timeout_s, config.max_header_bytes)
    return Server(
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
