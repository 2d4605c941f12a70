"""The Open Inference Protocol's gRPC messages (Triton's `inference` package), in a private descriptor pool.

The message classes are built at import from `proto/grpc_service.pb`, the compiled descriptor of
`proto/grpc_service.proto` (Triton's service definition, trimmed to the RPCs served here; `make proto`
rebuilds it). Two reasons for this instead of generated `*_pb2.py` modules:
- a private pool: `tritonclient.grpc` registers the same `inference.*` names in protobuf's default pool,
  so generated modules of ours would clash with it ("duplicate symbol") in any process that imports both
  (a test, a user's client that also embeds the server); in their own pool they never meet, and on the
  wire they are the same messages (same field numbers, checked against tritonclient by a test);
- no generated code: generated modules pin the protobuf runtime to the generator's version or newer; a
  descriptor is plain data that every protobuf release since 4.21 reads the same way.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
DESCRIPTOR_SET = Path(__file__).parent / "proto" / "grpc_service.pb"

POOL = descriptor_pool.DescriptorPool()
for file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file:
    POOL.Add(file)


def message(name: str) -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


# method name → (request class, response class), in the service's order
METHODS = {
    method.name: (message(method.input_type.name), message(method.output_type.name))
    for method in POOL.FindServiceByName(SERVICE).methods
}
ModelInferRequest, ModelInferResponse = METHODS["ModelInfer"]
