"""The gRPC transport over the DataPlane: `server` (Triton's GRPCInferenceService on grpc.aio: RPC table →
handler, named errors → status codes), `codec` (ModelInfer decode and encode), `messages` (the message
classes, from the descriptor in proto/). Never imports serve.http."""
