"""The gRPC transport: Triton's `inference.GRPCInferenceService` on grpcio's asyncio server, over a
DataPlane.

It runs on the event loop that serve/server.py runs both transports on, so they share the loaded models,
their batching queues and the metrics. Each RPC's handler receives the request's bytes and returns the
response's: a message that does not parse is the client's INVALID_ARGUMENT here, not grpcio's INTERNAL.
Named errors (serve/errors.py) become their gRPC status code, with the same message as over HTTP, in
`rpc` and nowhere else. Limits: a message over --max-body-mb is refused by grpcio itself
(RESOURCE_EXHAUSTED), rows per request as over HTTP.

Connections are bounded as HTTP's are, by grpc core's own options (`connection_options`): at most
`max_connections` at once (more are closed as soon as they are accepted), the HTTP/2 preface and
settings within --header-timeout-s, a connection without calls closed after --idle-timeout-s, any
connection closed after MAX_CONNECTION_AGE_S (its calls get SHUTDOWN_GRACE_S), and clients that ping
more often than every 5 minutes without calls sent away (keepalive enforcement).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import traceback

import grpc
from google.protobuf.message import DecodeError

from serve.dataplane import DataPlane
from serve.errors import BadRequest, ClientGone, ServeError
from serve.grpc.codec import decode_infer, encode_infer
from serve.grpc.messages import METHODS, SERVICE

MAX_CONNECTION_AGE_S = 600.0  # then a GOAWAY: clients reconnect (and spread over --workers again)
AGE_GRACE_S = 30.0  # calls in flight on a connection past its age get this long to finish
PING_INTERVAL_S = 60.0  # the server pings a connection with calls after this long without data
PING_TIMEOUT_S = 20.0  # and closes it when the ping is not answered within this
MIN_CLIENT_PING_S = 300.0  # a client pinging more often than this without calls gets strikes, then GOAWAY


class GrpcServer:
    def __init__(self, dataplane: DataPlane, max_connections: int | None = None):
        self.dataplane = dataplane
        self.config = dataplane.config
        self.max_connections = max_connections or self.config.max_connections
        self.server: grpc.aio.Server | None = None

    def connection_options(self) -> list[tuple[str, int]]:
        """grpc core's channel arguments that bound the connections (see the module's docstring)."""
        config = self.config
        return [
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.server_handshake_timeout_ms", milliseconds(config.header_timeout_s)),
            ("grpc.max_connection_idle_ms", milliseconds(config.idle_timeout_s)),
            ("grpc.max_connection_age_ms", milliseconds(MAX_CONNECTION_AGE_S)),
            ("grpc.max_connection_age_grace_ms", milliseconds(AGE_GRACE_S)),
            ("grpc.keepalive_time_ms", milliseconds(PING_INTERVAL_S)),
            ("grpc.keepalive_timeout_ms", milliseconds(PING_TIMEOUT_S)),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", milliseconds(MIN_CLIENT_PING_S)),
            ("grpc.http2.max_ping_strikes", 2),
        ]

    async def start(self) -> int:
        """Listen on the configured port; returns it (OSError when it cannot be bound)."""
        limit = self.config.max_body_bytes
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                # grpcio's default is on; off, a port already taken fails here instead of sharing it
                ("grpc.so_reuseport", int(self.config.reuse_port)),
                *self.connection_options(),
            ]
        )
        handlers = {method: self.rpc(method, *RPCS[method]) for method in METHODS}  # each RPC of the service
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        address = f"{self.config.host}:{self.config.grpc_port}"
        try:
            port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address} for gRPC: {exc}") from None
        await self.server.start()
        return port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting; calls in flight get `grace_s` to finish."""
        if self.server is not None:
            await self.server.stop(grace_s)

    def rpc(self, method: str, handler, endpoint: str):
        """grpcio's handler of `method`: bytes → `handler(self, request)` → bytes, errors → status codes."""
        request_class, _ = METHODS[method]
        dataplane, handler = self.dataplane, functools.partial(handler, self)

        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            start, model, status = time.perf_counter(), "", 500
            try:
                try:
                    request = request_class.FromString(raw)
                except DecodeError:
                    raise BadRequest(f"request is not a valid {request_class.__name__}") from None
                model = getattr(request, "model_name", "") or getattr(request, "name", "")
                response = await handler(request)
                status = 200
                return response if isinstance(response, bytes) else response.SerializeToString()
            except ServeError as exc:
                status = exc.status
                await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
            except asyncio.CancelledError:  # the client went away
                status = ClientGone.status
                raise
            except Exception:
                traceback.print_exc(file=sys.stderr)  # a defect of ours, never a client's fault
                await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
            finally:
                dataplane.record(model, endpoint, status, time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(call)

    # -- handlers: request message → response message (or its bytes) ------------------------------
    async def server_live(self, request):
        return response("ServerLive", live=True)

    async def server_ready(self, request):
        return response("ServerReady", ready=self.dataplane.not_ready_reason() is None)

    async def model_ready(self, request):
        return response("ModelReady", ready=self.dataplane.model_ready(request.name, request.version))

    async def server_metadata(self, request):
        return response("ServerMetadata", **self.dataplane.server_metadata())

    async def model_metadata(self, request):
        metadata = self.dataplane.model_metadata(request.name, request.version)
        del metadata["parameters"]  # not in Triton's ModelMetadataResponse: the schema is in ModelConfig's
        return response("ModelMetadata", **metadata)

    async def model_infer(self, request) -> bytes:
        served = self.dataplane.served(request.model_name, request.model_version)
        with self.dataplane.counting(served):
            decoded = decode_infer(request, served.model, self.config.max_rows)
            results = await self.dataplane.infer(
                served, decoded.features, "grpc_infer", decoded.id, decoded.outputs
            )
            return encode_infer(served.model, decoded, results)

    async def model_config(self, request):
        return response("ModelConfig", config=self.dataplane.model_config(request.name, request.version))

    async def model_statistics(self, request):
        return self.dataplane.statistics(request.name, request.version)

    async def repository_index(self, request):
        return response("RepositoryIndex", models=self.dataplane.index(ready_only=request.ready))

    async def repository_model_load(self, request):
        await self.dataplane.load_model(request.model_name, list(request.parameters))
        return response("RepositoryModelLoad")

    async def repository_model_unload(self, request):
        await self.dataplane.unload_model(request.model_name, list(request.parameters))
        return response("RepositoryModelUnload")


RPCS = {  # RPC → (handler, endpoint label for metrics: HTTP's labels, prefixed)
    "ServerLive": (GrpcServer.server_live, "grpc_health"),
    "ServerReady": (GrpcServer.server_ready, "grpc_health"),
    "ModelReady": (GrpcServer.model_ready, "grpc_health"),
    "ServerMetadata": (GrpcServer.server_metadata, "grpc_metadata"),
    "ModelMetadata": (GrpcServer.model_metadata, "grpc_metadata"),
    "ModelInfer": (GrpcServer.model_infer, "grpc_infer"),
    "ModelConfig": (GrpcServer.model_config, "grpc_metadata"),
    "ModelStatistics": (GrpcServer.model_statistics, "grpc_metadata"),
    "RepositoryIndex": (GrpcServer.repository_index, "grpc_repository"),
    "RepositoryModelLoad": (GrpcServer.repository_model_load, "grpc_repository"),
    "RepositoryModelUnload": (GrpcServer.repository_model_unload, "grpc_repository"),
}


def milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def response(method: str, **fields):
    return METHODS[method][1](**fields)
