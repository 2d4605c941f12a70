"""The HTTP transport: a plain ASGI application speaking the Open Inference Protocol (KServe V2) and
KServe V1 over a DataPlane.

Each request goes route → read body (within limits) → decode → validate → batch/run → encode. The route
table maps a method and a path to its handler. Named errors from `serve.errors` become `{"error": ...}`
with their status, in `__call__` and nowhere else; anything unexpected is logged there and answered 500
without a stack trace (no client input reaches that path by design). What is not HTTP (models, versions,
batching, health, model control, metrics) is the DataPlane's, shared with gRPC; serve/server.py runs
this application under uvicorn and starts and drains it together with the gRPC server.
"""

from __future__ import annotations

import functools
import re
import sys
import time
import traceback
from urllib.parse import unquote

from serve.dataplane import DataPlane
from serve.errors import (
    QUOTE_LIMIT,
    BadRequest,
    ClientGone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServeError,
    Unavailable,
)
from serve.http import codec
from serve.triton import json_form

JSON = [(b"content-type", b"application/json")]


class App:
    def __init__(self, dataplane: DataPlane):
        self.dataplane, self.config = dataplane, dataplane.config

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan: serve/server.py starts and stops what the app needs
            return None
        start = time.perf_counter()
        model, endpoint = "", "unknown"
        try:
            handler, params, endpoint = route(
                scope["method"], scope.get("raw_path") or scope["path"].encode()
            )
            model = params.get("name", "")
            status, body, headers = await handler(self, scope, receive, params)
        except ServeError as exc:
            status, body, headers = exc.status, codec.encode_json({"error": exc.message}), JSON
            if status == 413:  # the rest of the body is not read: end the connection
                headers = [*JSON, (b"connection", b"close")]
        except Exception:  # a defect of ours, never a client's fault: log it, answer without details
            traceback.print_exc(file=sys.stderr)
            status, body, headers = 500, codec.encode_json({"error": "internal server error"}), JSON
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.dataplane.record(model, endpoint, status, time.perf_counter() - start)
        return None

    async def read_body(self, scope, receive) -> bytes:
        limit = self.config.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"body of {int(value)} bytes is over the limit of {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()  # a stalled body is answered 408 by serve.http.connection
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
        return 200, codec.encode_json({"live": True}), JSON

    async def ready(self, scope, receive, params):
        reason = self.dataplane.not_ready_reason()
        if reason:
            raise Unavailable(reason)
        return 200, codec.encode_json({"ready": True}), JSON

    async def server_metadata(self, scope, receive, params):
        return 200, codec.encode_json(self.dataplane.server_metadata()), JSON

    async def model_ready(self, scope, receive, params):
        self.dataplane.served(params["name"], params.get("version"))
        return 200, codec.encode_json({"name": params["name"], "ready": True}), JSON

    async def model_metadata(self, scope, receive, params):
        body = self.dataplane.model_metadata(params["name"], params.get("version"))
        return 200, codec.encode_json(body), JSON

    async def model_config(self, scope, receive, params):
        config = self.dataplane.model_config(params["name"], params.get("version"))
        return 200, codec.encode_json(json_form(config)), JSON

    async def statistics(self, scope, receive, params):
        stats = self.dataplane.statistics(params.get("name", ""), params.get("version", ""))
        return 200, codec.encode_json(json_form(stats)), JSON

    async def infer(self, scope, receive, params):
        served = self.dataplane.served(params["name"], params.get("version"))
        with self.dataplane.counting(served):
            body = await self.read_body(scope, receive)
            header_length = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"inference-header-content-length"),
                None,
            )
            request = codec.decode_v2(body, header_length, served.model, self.config.max_rows)
            results = await self.dataplane.infer(
                served, request.features, "v2_infer", request.id, request.outputs
            )
            payload, headers = codec.encode_v2(served.model, request, results)
        return 200, payload, [(k.encode(), v.encode()) for k, v in headers.items()]

    async def repository_index(self, scope, receive, params):
        body = await self.read_body(scope, receive)
        options = codec.load_json(body) if body.strip() else {}
        if not isinstance(options, dict):
            raise BadRequest("repository index request must be a JSON object")
        rows = self.dataplane.index(ready_only=options.get("ready") is True)
        return 200, codec.encode_json(rows), JSON

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
        options = codec.load_json(body) if body.strip() else {}
        parameters = options.get("parameters") or {} if isinstance(options, dict) else None
        if not isinstance(parameters, dict):
            raise BadRequest('model control request must be a JSON object, with "parameters" an object')
        return list(parameters)

    async def v1_metadata(self, scope, receive, params):
        return 200, codec.encode_json(self.dataplane.v1_metadata(params["name"])), JSON

    async def v1_predict(self, scope, receive, params):
        served = self.dataplane.served(params["name"])
        with self.dataplane.counting(served):
            body = await self.read_body(scope, receive)
            features, ignored = codec.decode_v1(body, served.model, self.config.max_rows)
            results = await self.dataplane.infer(served, served.model.check_features(features), "v1_predict")
            answer = codec.encode_v1(served.model, results, ignored)
        return 200, answer, JSON

    async def metrics_text(self, scope, receive, params):
        body = self.dataplane.metrics.render()
        return 200, body, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


MODEL = r"(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
ROUTES = [  # (method, pattern on the raw path, handler, endpoint label for metrics)
    ("GET", r"/v2/health/live", App.live, "health"),
    ("GET", r"/v2/health/ready", App.ready, "health"),
    ("GET", r"/v2", App.server_metadata, "metadata"),
    ("GET", rf"/v2/models/{MODEL}/ready", App.model_ready, "health"),
    ("GET", r"/v2/models/stats", App.statistics, "metadata"),  # before a model named "stats"
    ("GET", rf"/v2/models/{MODEL}/config", App.model_config, "metadata"),
    ("GET", rf"/v2/models/{MODEL}/stats", App.statistics, "metadata"),
    ("GET", rf"/v2/models/{MODEL}", App.model_metadata, "metadata"),
    ("POST", rf"/v2/models/{MODEL}/infer", App.infer, "v2_infer"),
    ("POST", r"/v2/repository/index", App.repository_index, "metadata"),
    ("POST", r"/v2/repository/models/(?P<name>[^/]+)/load", App.load_model, "repository"),
    ("POST", r"/v2/repository/models/(?P<name>[^/]+)/unload", App.unload_model, "repository"),
    ("GET", r"/v1/models/(?P<name>[^/:]+)", App.v1_metadata, "metadata"),
    ("POST", r"/v1/models/(?P<name>[^/:]+):predict", App.v1_predict, "v1_predict"),
    ("GET", r"/metrics", App.metrics_text, "metrics"),
]
COMPILED = [(method, re.compile(pattern), handler, endpoint) for method, pattern, handler, endpoint in ROUTES]


@functools.lru_cache(maxsize=4096)  # errors raise and are not cached; handlers only read `params`
def route(method: str, raw_path: bytes) -> tuple:
    """(handler, unquoted path parameters, endpoint label). Parameters are matched on the raw path, so
    an encoded slash stays inside one segment (and then fails the model name check: 404)."""
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
    shown = path if len(path) <= QUOTE_LIMIT else f"{path[:QUOTE_LIMIT]}…"
    if allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {shown}")
    raise NotFound(f"no such endpoint: {method[:QUOTE_LIMIT]} {shown}")
