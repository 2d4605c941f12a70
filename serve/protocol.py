"""Open Inference Protocol (KServe V2) and KServe V1 bodies: decode → validated arrays, arrays → encode.

V2 tensors arrive as JSON `data` (nested or flat) or, with the binary tensor data extension, as raw
little-endian bytes after a JSON header whose length is the `Inference-Header-Content-Length` header.
Every size a client claims is checked against the limits and the bytes actually present before any
memory is allocated for it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import orjson

from serve.errors import BadRequest
from serve.model import INPUT_NAME, Model

V2_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
ALWAYS_EXACT_IN_FP32 = {"BOOL", "UINT8", "UINT16", "INT8", "INT16", "FP16", "FP32"}
MAX_DIMS = 8
warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning, __name__)
FLOAT32_EXACT_INT = 2**24  # integers up to this magnitude are exact in float32


@dataclass
class InferRequest:
    id: str | None
    features: np.ndarray  # (rows, n_features) float32
    outputs: list[str]  # requested output names, in response order
    binary: dict[str, bool]  # output name → send as binary data


def load_json(raw: bytes):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # the slow path accepts the NaN and Infinity literals that Python clients (tritonclient) send
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary section of a V2 body."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
    if not 0 <= length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {length} does not fit the {len(body)}-byte body")
    return body[:length], memoryview(body)[length:]


def check_shape(shape, model: Model, max_rows: int) -> tuple[int, int]:
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise BadRequest(f"shape must be a list of integers, got {shape!r}"[:300])
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise BadRequest(f"shape {shape[: MAX_DIMS + 1]} is not a valid tensor shape")
    if len(shape) != 2 or shape[1] != model.n_features:
        raise BadRequest(
            f"input {INPUT_NAME!r} of model {model.name!r} has shape [rows, {model.n_features}], got {shape}"
        )
    if shape[0] > max_rows:
        raise BadRequest(f"{shape[0]} rows is more than the limit of {max_rows} per request")
    return shape[0], shape[1]


def to_float32(values: np.ndarray, datatype: str) -> np.ndarray:
    """Coerce to FP32 where that loses nothing; refuse otherwise. (JSON numbers sent as FP32 beyond
    its range become ±Inf here and are refused by the model's feature check.)"""
    if datatype in ALWAYS_EXACT_IN_FP32 or values.dtype.kind == "b":
        return values.astype(np.float32, copy=False)
    if values.dtype.kind in "iu":
        if values.size and np.abs(values.astype(np.float64)).max() > FLOAT32_EXACT_INT:
            raise BadRequest(f"{datatype} values beyond ±2^24 cannot be represented exactly in FP32")
        return values.astype(np.float32)
    narrowed = values.astype(np.float32)
    if not np.array_equal(narrowed.astype(np.float64), values, equal_nan=True):
        raise BadRequest(f"{datatype} values lose precision as FP32; send FP32")
    return narrowed


def json_values(data, datatype: str, count: int) -> np.ndarray:
    """`data` (nested or flat JSON numbers; null means missing) → flat numpy array of `count` values."""
    if not isinstance(data, list):
        raise BadRequest("input data must be a JSON array")
    try:
        values = np.array(data)
    except ValueError:
        raise BadRequest(f"input data must be {datatype} numbers in a regular (non-ragged) array") from None
    if values.dtype.kind == "O":  # nulls (missing values) among the numbers, or something else
        flat = values.reshape(-1)
        if not all(v is None or type(v) in (int, float) for v in flat):
            raise BadRequest(f"input data must be {datatype} numbers in a regular (non-ragged) array")
        values = np.array([np.nan if v is None else v for v in flat], dtype=np.float64)
    elif values.dtype.kind not in "biuf":
        raise BadRequest(f"input data must be {datatype} numbers")
    if values.size != count:
        raise BadRequest(f"shape needs {count} values, data has {values.size}")
    if datatype[0] in "IU" and values.dtype.kind == "f":
        if not np.array_equal(values, np.round(values)):
            raise BadRequest(f"{datatype} data must be integers")
        values = values.astype(np.int64)
    return values.reshape(-1)


def decode_v2(body: bytes, header_length: str | None, model: Model, max_rows: int) -> InferRequest:
    header, binary = split_binary(body, header_length)
    request = load_json(header)
    if not isinstance(request, dict):
        raise BadRequest("request must be a JSON object")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("request id must be a string")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("request needs a non-empty 'inputs' list")
    names = [i.get("name") if isinstance(i, dict) else None for i in inputs]
    tensor = inputs[0]
    datatype = tensor.get("datatype") if isinstance(tensor, dict) else None
    check_input(names, datatype, model)
    rows, width = check_shape(tensor.get("shape"), model, max_rows)
    count = rows * width
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("input parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        dtype = np.dtype(V2_NUMPY[datatype]).newbyteorder("<")
        if type(size) is not int or size != count * dtype.itemsize:
            raise BadRequest(
                f"binary_data_size {size!r} does not match shape {[rows, width]} of {datatype}"[:200]
            )
        if size > len(binary):
            raise BadRequest(f"binary data truncated: {size} bytes announced, {len(binary)} present")
        values = np.frombuffer(binary[:size], dtype=dtype)
    elif "data" in tensor:
        values = json_values(tensor["data"], datatype, count)
    else:
        raise BadRequest(f"input {INPUT_NAME!r} has neither 'data' nor parameters.binary_data_size")
    features = to_float32(values, datatype).reshape(rows, width)
    outputs, binary_outputs = requested_outputs(request, model)
    return InferRequest(request_id, model.check_features(features), outputs, binary_outputs)


def requested_outputs(request: dict, model: Model) -> tuple[list[str], dict[str, bool]]:
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("request parameters must be an object")
    default_binary = parameters.get("binary_data_output", False) is True
    wanted = request.get("outputs")
    if wanted is None:
        return model.output_names, dict.fromkeys(model.output_names, default_binary)
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise BadRequest("'outputs' must be a list of objects")
    names = [output.get("name") for output in wanted]
    options = [output.get("parameters") or {} for output in wanted]
    selected = select_outputs(model, names)
    for name, option in zip(names, options):
        if not isinstance(option, dict):
            raise BadRequest(f"parameters of output {name!r} must be an object")
    binary = {n: o.get("binary_data", default_binary) is True for n, o in zip(names, options)}
    return selected, {n: binary.get(n, default_binary) for n in selected}


def select_outputs(model: Model, names: list) -> list[str]:
    """The requested output names, checked (every transport: HTTP and gRPC); all outputs when none."""
    if not names:
        return model.output_names
    for k, name in enumerate(names):
        if not isinstance(name, str) or name not in model.outputs:
            raise BadRequest(
                f"model {model.name!r} has no output {name!r}; outputs: {', '.join(model.output_names)}"[:300]
            )
        if name in names[:k]:
            raise BadRequest(f"output {name!r} requested twice")
    return names


def check_input(names: list, datatype, model: Model) -> None:
    """One input named `features` of a numeric datatype (every transport)."""
    if len(names) != 1 or names != [INPUT_NAME]:
        raise BadRequest(
            f"model {model.name!r} takes exactly one input named {INPUT_NAME!r}, got {names}"[:300]
        )
    if not isinstance(datatype, str) or datatype not in V2_NUMPY:
        raise BadRequest(f"datatype {datatype!r} is not a numeric tensor type"[:200])


def encode_v2(model: Model, request: InferRequest, results: dict[str, np.ndarray]) -> tuple[bytes, dict]:
    """The response body and its extra headers (binary outputs follow the JSON header)."""
    outputs, chunks = [], []
    for name in request.outputs:
        value = results[name]
        tensor = {"name": name, "datatype": model.outputs[name]["datatype"], "shape": list(value.shape)}
        if request.binary[name]:
            raw = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = np.ascontiguousarray(value).reshape(-1)  # orjson writes numpy arrays natively
        outputs.append(tensor)
    response = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def decode_v1(body: bytes, model: Model, max_rows: int) -> np.ndarray:
    request = load_json(body)
    instances = request.get("instances") if isinstance(request, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest('request needs a non-empty "instances" list of rows')
    if len(instances) > max_rows:
        raise BadRequest(f"{len(instances)} rows is more than the limit of {max_rows} per request")
    return model.encode_rows(instances)


def encode_json(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
