"""The lightweight runtime: onnxruntime + numpy only (never torch, onnx, pipeline or export).

`model` holds the runtime model class (load → predict), `repository` loads a model repository,
`protocol` decodes and encodes Open Inference Protocol (V2) and V1 bodies, `batching` merges concurrent
requests, `app` is the HTTP server. `predict` is batch prediction from CSV or Parquet (`tables` reads,
`batch_encoding` encodes); it needs pyarrow, the `batch` extra, which the HTTP server never imports.
"""
