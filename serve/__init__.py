"""The lightweight runtime: onnxruntime + numpy only (never torch, onnx, pipeline or export).

`model` holds the runtime model class (load → predict); `repository` reads a model repository into the
versions served (`policy`: config.pbtxt's version_policy) and `lifecycle` keeps them in step with the
disk (poll, explicit load/unload); `protocol` decodes and encodes Open Inference Protocol (V2) and V1
bodies, `batching` merges concurrent requests; `dataplane` is what both transports share, `app` is the
HTTP server and `grpc_server` (`grpc_protocol`, `grpc_messages`) the gRPC one; `workers` runs several
server processes on one port. `predict` is batch prediction from CSV or Parquet (`tables` reads,
`serve.predict.encoding` encodes); it needs pyarrow, the `batch` extra, which the servers never import.
"""
