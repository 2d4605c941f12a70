"""HTTP bodies: Open Inference Protocol (KServe V2) JSON and binary, and KServe V1 JSON; decode →
a checked request (serve.request's checks, shared with gRPC), results → encode.

V2 tensors arrive as JSON `data` (nested or flat) or, with the binary tensor data extension, as raw
little-endian bytes after a JSON header whose length is the `Inference-Header-Content-Length` header
(each input's bytes in the order of the inputs; BYTES elements length-prefixed, as Triton lays them out).
Every size a client claims is checked against the limits and the bytes actually present before any
memory is allocated for it.
"""

from __future__ import annotations

import json

import numpy as np
import orjson

from contract.repository import INPUT_NAME
from serve.errors import BadRequest
from serve.model import Model
from serve.request import (
    MAX_IGNORED,
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
    named, ignored = plan_inputs(names, model)
    starts = binary_starts(inputs) if len(inputs) > 1 else [0]
    if named:
        features = decode_named(inputs, names, binary, starts, model, max_rows)
    else:
        k = names.index(INPUT_NAME)
        tensor = inputs[k]
        datatype = tensor.get("datatype")
        check_input(datatype)
        rows, width = check_shape(tensor.get("shape"), model, max_rows)
        values = tensor_values(tensor, INPUT_NAME, datatype, rows * width, binary[starts[k] :])
        features = model.check_features(to_float32(values, datatype).reshape(rows, width))
    outputs, binary_outputs = requested_outputs(request, model)
    return InferRequest(
        id=request_id, features=features, outputs=outputs, binary=binary_outputs, ignored=ignored
    )


def binary_starts(inputs: list) -> list[int]:
    """Where each input's binary data begins: the binary section holds them in the order of the inputs."""
    starts, offset = [], 0
    for tensor in inputs:
        starts.append(offset)
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if type(size) is not int or size < 0:
                raise BadRequest(f"binary_data_size {size!r} is not a number of bytes"[:200])
            offset += size
    return starts


def tensor_values(tensor: dict, name: str, datatype: str, count: int, binary: memoryview):
    """The `count` values of one input, from its JSON `data` or its binary data (which starts `binary`):
    a flat numpy array, or for BYTES a list of elements (bytes, or str and None from JSON)."""
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("input parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        if datatype == "BYTES":
            if type(size) is not int or size > len(binary):
                raise BadRequest(
                    f"binary data truncated: {size!r:.20} bytes announced, {len(binary)} present"
                )
            return split_bytes(binary[:size], count, name)
        dtype = np.dtype(V2_NUMPY[datatype]).newbyteorder("<")
        if type(size) is not int or size != count * dtype.itemsize:
            raise BadRequest(
                f"binary_data_size {size!r} does not match the shape of {name!r} ({datatype})"[:200]
            )
        if size > len(binary):
            raise BadRequest(f"binary data truncated: {size} bytes announced, {len(binary)} present")
        return np.frombuffer(binary[:size], dtype=dtype)
    if "data" not in tensor:
        raise BadRequest(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    if datatype == "BYTES":
        return json_texts(tensor["data"], name, count)
    return json_values(tensor["data"], datatype, count)


def decode_named(inputs, names, binary, starts, model: Model, max_rows: int) -> np.ndarray:
    """One input per feature → the checked feature matrix (serve.request.encode_named)."""
    columns, rows = [], {}
    for k, (tensor, name) in enumerate(zip(inputs, names)):
        if name not in model.feature_index:
            continue  # ignored; its binary data, if any, is skipped by `starts`
        datatype = tensor.get("datatype")
        rows[name] = check_named(name, datatype, tensor.get("shape"), max_rows)
        columns.append(
            (name, datatype, tensor_values(tensor, name, datatype, rows[name], binary[starts[k] :]))
        )
    return encode_named(columns, model, same_rows(rows))


def json_texts(data, name: str, count: int) -> list:
    """BYTES `data` as JSON: strings (null: missing), flat or one element per row."""
    if not isinstance(data, list):
        raise BadRequest("input data must be a JSON array")
    if any(isinstance(row, list) for row in data):
        if not all(isinstance(row, list) for row in data):
            raise BadRequest(f"input {name!r} mixes rows and values in its data")
        data = [v for row in data for v in row]
    if len(data) != count or not all(v is None or isinstance(v, str) for v in data):
        raise BadRequest(f"input {name!r} needs {count} strings (or null), one per row")
    return data


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
    if request.ignored:
        response["parameters"] = request.parameters
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def decode_v1(body: bytes, model: Model, max_rows: int) -> tuple[np.ndarray, list[str]]:
    """The rows of a V1 request, and the names in them that are not features (ignored)."""
    request = load_json(body)
    instances = request.get("instances") if isinstance(request, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest('request needs a non-empty "instances" list of rows')
    if len(instances) > max_rows:
        raise BadRequest(f"{len(instances)} rows is more than the limit of {max_rows} per request")
    return model.encode_rows(instances), model.unknown_names(instances)


def encode_v1(model: Model, results: dict[str, np.ndarray], ignored: list[str]) -> bytes:
    """V1's answer: per row, the class name and the probability of each class, or the named values; and
    the names the request gave that are not features, when there were any."""
    answer = {"predictions": model.describe(results)}
    if ignored:
        answer["ignored"] = [name[:100] for name in ignored[:MAX_IGNORED]]
    return encode_json(answer)


def encode_json(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
