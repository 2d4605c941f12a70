"""ModelInfer over gRPC: a ModelInferRequest → the same checked InferRequest that HTTP's codec makes, and
results → ModelInferResponse bytes. The checks and their messages are serve/request.py's (input name,
datatype, shape, rows, FP32 exactness, outputs) and the model's (±Inf), so the two transports refuse the
same input with the same words.

Values arrive as typed `contents` (fp32_contents, int64_contents, bytes_contents ... by Triton's datatype
rule) or as little-endian bytes in `raw_input_contents` (what tritonclient sends; one entry per input,
BYTES elements length-prefixed), for `features` or for one input per feature (serve/request.py). The
answer comes in kind: `raw_output_contents` for a raw request (Triton's way, and the only one tritonclient
reads), typed contents otherwise (readable by KServe's clients and by grpcurl-style tools).
"""

from __future__ import annotations

import numpy as np

from contract.repository import INPUT_NAME
from serve.errors import BadRequest
from serve.grpc.messages import ModelInferResponse
from serve.model import Model
from serve.request import (
    V2_NUMPY,
    InferRequest,
    check_input,
    check_named,
    check_shape,
    encode_named,
    plan_inputs,
    same_rows,
    select_outputs,
    split_bytes,
    to_float32,
)

CONTENTS = {  # datatype → the InferTensorContents field that carries it; FP16 has none (raw only)
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
FIELD_DTYPES = {
    "bool_contents": np.bool_,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


def decode_infer(request, model: Model, max_rows: int) -> InferRequest:
    named, ignored = plan_inputs([t.name for t in request.inputs], model)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        count = len(request.inputs)
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {count} input{'s' * (count != 1)}")
    if named:
        columns, rows = [], {}
        for k, tensor in enumerate(request.inputs):
            if tensor.name not in model.feature_index:
                continue  # ignored
            rows[tensor.name] = check_named(tensor.name, tensor.datatype, list(tensor.shape), max_rows)
            values = tensor_values(tensor, rows[tensor.name], raw[k] if raw else None)
            columns.append((tensor.name, tensor.datatype, values))
        features = encode_named(columns, model, same_rows(rows))
    else:
        k = [t.name for t in request.inputs].index(INPUT_NAME)
        tensor = request.inputs[k]
        check_input(tensor.datatype)
        rows, width = check_shape(list(tensor.shape), model, max_rows)
        values = tensor_values(tensor, rows * width, raw[k] if raw else None)
        features = model.check_features(to_float32(values, tensor.datatype).reshape(rows, width))
    outputs = select_outputs(model, [o.name for o in request.outputs])
    return InferRequest(
        id=request.id or None,
        features=features,
        outputs=outputs,
        binary=dict.fromkeys(outputs, bool(raw)),
        ignored=ignored,
    )


def tensor_values(tensor, count: int, raw: bytes | None):
    """The `count` values of one input: from its raw contents when the request has them, else from its
    typed contents. A flat numpy array, or for BYTES a list of elements (bytes)."""
    datatype, name = tensor.datatype, tensor.name
    if raw is not None:
        if tensor.HasField("contents"):
            raise BadRequest(f"input {name!r} has both contents and raw_input_contents")
        if datatype == "BYTES":
            return split_bytes(raw, count, name)
        dtype = np.dtype(V2_NUMPY[datatype]).newbyteorder("<")
        if len(raw) != count * dtype.itemsize:
            raise BadRequest(
                f"raw_input_contents holds {len(raw)} bytes; shape {list(tensor.shape)} of {datatype} "
                f"needs {count * dtype.itemsize}"
            )
        return np.frombuffer(raw, dtype=dtype)
    if datatype == "BYTES":
        data = tensor.contents.bytes_contents
        if len(data) != count:
            raise BadRequest(f"shape needs {count} values, data has {len(data)}")
        return list(data)
    field = CONTENTS.get(datatype)
    if field is None:
        raise BadRequest(f"{datatype} values must be sent in raw_input_contents")
    data = getattr(tensor.contents, field)
    if len(data) != count:
        raise BadRequest(f"shape needs {count} values, data has {len(data)}")
    return np.fromiter(data, dtype=FIELD_DTYPES[field], count=count)


def encode_infer(model: Model, request: InferRequest, results: dict[str, np.ndarray]) -> bytes:
    response = ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id or "")
    for key, value in request.parameters.items():
        response.parameters[key].string_param = value
    for name in request.outputs:
        value = np.ascontiguousarray(results[name])
        datatype = model.outputs[name]["datatype"]
        tensor = response.outputs.add(name=name, datatype=datatype, shape=value.shape)
        if request.binary[name]:  # all outputs or none: tritonclient finds them by position
            response.raw_output_contents.append(value.astype(value.dtype.newbyteorder("<")).tobytes())
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(value.ravel().tolist())
    return response.SerializeToString()
