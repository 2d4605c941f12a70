"""The lightweight runtime: onnxruntime + numpy only (never torch, onnx, pipeline or export); the format
of what it reads is contract/'s.

- `model`: the runtime model class (`Model.load` → predict); `store`: reading a model directory;
  `repository`: the versions served (`policy`: config.pbtxt's version_policy) and `lifecycle`: keeping
  them in step with the disk (poll, explicit load/unload); `batching`: merging concurrent requests;
  `metrics`; `errors`: the named errors and their statuses; `config`: the server's settings.
- `dataplane`: what both transports do (health, metadata, index, model control, inference);
  `request`: the request checks both share.
- `http/` and `grpc/`: the two transports over the data plane; neither imports the other.
- `server`: the composition root, which starts both over one data plane and drains them together;
  `workers`: several server processes on one port. `__main__`: the command line.
- `predict/`: batch prediction from CSV or Parquet; it needs pyarrow (the `batch` extra), which the
  servers never import.
"""
