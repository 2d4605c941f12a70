"""An inference request as both transports decode it, and the checks they share (HTTP's V2 JSON and
binary bodies in serve/http/codec.py, gRPC's ModelInferRequest in serve/grpc/codec.py), so the two
refuse the same input with the same words.

A request sends its rows in one of two ways (`plan_inputs`):
- the graph's own input, `features` [rows, n_features], of a numeric datatype: values are coerced to
  FP32 only where that loses nothing, and a category is its code;
- one input per feature, named after it, [rows] or [rows, 1]: BYTES (each element a UTF-8 text, decoded
  by the model's input rule, serve/model.py: category names, numbers, missing-value tokens) or a numeric
  datatype (numbers; a category's code). Features not sent are missing values.
Inputs named after nothing the model knows are ignored, and the response names them (`ignored`).
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

from contract.repository import INPUT_NAME
from serve.errors import BadRequest
from serve.model import MAX_TEXT, Model, is_missing_value

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
    ignored: list[str] = field(default_factory=list)  # input names that are not the model's

    @property
    def parameters(self) -> dict[str, str]:
        """The response's parameters: the ignored input names, as JSON text (parameters are scalars)."""
        return {"ignored_inputs": json.dumps(self.ignored)} if self.ignored else {}


MAX_IGNORED = 20  # ignored names a response repeats, each cut to 100 characters


def plan_inputs(names: list, model: Model) -> tuple[bool, list[str]]:
    """(whether the rows come as named inputs rather than `features`, the ignored names)."""
    if not all(isinstance(n, str) for n in names):
        raise BadRequest("every input needs a name (a string)")
    if len(set(names)) != len(names):
        twice = next(n for k, n in enumerate(names) if n in names[:k])
        raise BadRequest(f"input {twice!r:.100} is given twice")
    named = [n for n in names if n in model.feature_index and n != INPUT_NAME]
    ignored = [n[:100] for n in names if n != INPUT_NAME and n not in model.feature_index][:MAX_IGNORED]
    if INPUT_NAME in names:
        if named:
            raise BadRequest(
                f"send either {INPUT_NAME!r} or one input per feature, not both (got {INPUT_NAME!r} and "
                f"{', '.join(map(repr, named))})"[:300]
            )
        return False, ignored
    if not named:
        raise BadRequest(
            f"model {model.name!r} takes input {INPUT_NAME!r} [rows, {model.n_features}] or inputs named "
            f"after its features ({', '.join(model.feature_index)}), got {names}"[:400]
        )
    return True, ignored


def check_input(datatype) -> None:
    """`features` is of a numeric datatype."""
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


# -- one input per feature ---------------------------------------------------------------------------
def check_named(name: str, datatype, shape, max_rows: int) -> int:
    """The rows of a feature's own input: BYTES or numeric, shape [rows] or [rows, 1]."""
    if not isinstance(datatype, str) or (datatype not in V2_NUMPY and datatype != "BYTES"):
        raise BadRequest(f"input {name!r}: datatype {datatype!r} is not BYTES or a numeric type"[:200])
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise BadRequest(f"shape must be a list of integers, got {shape!r}"[:300])
    if len(shape) not in (1, 2) or any(d < 0 for d in shape) or shape[1:] not in ([], [1]):
        raise BadRequest(f"input {name!r} has shape [rows] or [rows, 1], got {shape[: MAX_DIMS + 1]}")
    if shape[0] > max_rows:
        raise BadRequest(f"{shape[0]} rows is more than the limit of {max_rows} per request")
    return shape[0]


def same_rows(rows: dict[str, int]) -> int:
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{name} {n}" for name, n in rows.items())
        raise BadRequest(f"inputs have different row counts: {counts}"[:300])
    return next(iter(rows.values()))


def split_bytes(raw, count: int, name: str) -> list[bytes]:
    """BYTES tensor data as Triton lays it out (binary extension, raw contents): per element, its length
    as a 4-byte little-endian integer, then its bytes."""
    elements, offset, size = [], 0, len(raw)
    for k in range(count):
        if offset + 4 > size:
            raise BadRequest(f"input {name!r}: BYTES data ends before element {k} of {count}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if length > size - offset:
            raise BadRequest(f"input {name!r}: element {k} claims {length} bytes, {size - offset} remain")
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    if offset != size:
        raise BadRequest(f"input {name!r}: {size - offset} bytes after its {count} elements")
    return elements


def text_of(name: str, k: int, raw) -> str | None:
    """One BYTES element as text (None stays None: JSON's null, a missing value)."""
    if raw is None or isinstance(raw, str):
        text = raw
    else:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r} element {k} is not UTF-8 text") from None
    if text is not None and len(text) > MAX_TEXT:
        raise BadRequest(f"input {name!r} element {k}: a text of {len(text)} characters (at most {MAX_TEXT})")
    return text


def encode_named(columns: list[tuple[str, str, object]], model: Model, rows: int) -> np.ndarray:
    """(name, datatype, values) of each feature sent → the checked (rows, n_features) float32 matrix.
    BYTES values (bytes, str or None) go through the model's input rule one distinct value at a time;
    numbers go in as they are (NaN: missing). A row that gives no feature is refused."""
    features = np.full((rows, model.n_features), np.nan, np.float32)
    given = np.zeros(rows, bool)
    for name, datatype, values in columns:
        j = model.feature_index[name]
        if datatype != "BYTES":
            column = to_float32(np.asarray(values).reshape(-1), datatype)
            features[:, j] = column
            given |= ~np.isnan(column)
            continue
        seen: dict = {}  # element → (code, given): a categorical column repeats a few values
        for k, raw in enumerate(values):
            known = seen.get(raw)
            if known is None:
                text = text_of(name, k, raw)
                known = (model.encode_value(j, text, k), not is_missing_value(text))
                if len(seen) < 4096:
                    seen[raw] = known
            features[k, j], present = known
            given[k] |= present
    features = model.check_features(features)
    if rows and not given.all():
        raise model.nothing_given(int(np.argmin(given)))
    return features
