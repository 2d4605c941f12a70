"""An inference request as both transports decode it, and the checks they share (HTTP's V2 JSON and
binary bodies in serve/http/codec.py, gRPC's ModelInferRequest in serve/grpc/codec.py), so the two
refuse the same input with the same words: one input named `features` of a numeric datatype, its shape
against the model and the row limit, values coerced to FP32 only where that loses nothing, the outputs
asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from contract.repository import INPUT_NAME
from serve.errors import BadRequest
from serve.model import Model

V2_NUMPY = {  # Open Inference Protocol datatype → numpy
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


@dataclass(kw_only=True)
class InferRequest:
    id: str | None
    features: np.ndarray  # (rows, n_features) float32, checked
    outputs: list[str]  # requested output names, in response order
    binary: dict[str, bool]  # output name → send as binary data


def check_input(names: list, datatype, model: Model) -> None:
    """One input named `features` of a numeric datatype."""
    if len(names) != 1 or names != [INPUT_NAME]:
        raise BadRequest(
            f"model {model.name!r} takes exactly one input named {INPUT_NAME!r}, got {names}"[:300]
        )
    if not isinstance(datatype, str) or datatype not in V2_NUMPY:
        raise BadRequest(f"datatype {datatype!r} is not a numeric tensor type"[:200])


def check_shape(shape, model: Model, max_rows: int) -> tuple[int, int]:
    """(rows, width) of a [rows, n_features] shape within the row limit."""
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
    """Coerce to FP32 where that loses nothing; refuse otherwise. (Numbers sent as FP32 beyond its range
    become ±Inf here and are refused by the model's feature check.)"""
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


def select_outputs(model: Model, names: list) -> list[str]:
    """The requested output names, checked; all outputs when none."""
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
