"""The Open Inference Protocol's gRPC service (Triton's `inference.GRPCInferenceService`): its methods and
their request and response classes, from the private descriptor pool of serve/triton.py (which builds
them from `proto/grpc_service.pb`; `make proto` rebuilds it)."""

from __future__ import annotations

from serve.triton import POOL, message

SERVICE = "inference.GRPCInferenceService"

# method name → (request class, response class), in the service's order
METHODS = {
    method.name: (message(method.input_type.name), message(method.output_type.name))
    for method in POOL.FindServiceByName(SERVICE).methods
}
ModelInferRequest, ModelInferResponse = METHODS["ModelInfer"]
