"""Arrow record batches → the model's float32 feature matrix, by the rules of `Model.encode_rows`.

Those rules, column by column and without a Python loop over rows:
- a missing token ("", NA, nan, n/a, ?, null, none; any case, stripped) or a null is NaN, and so is a
  feature the table has no column for;
- a numeric feature is its number; text that is not a number is an error naming the cell;
- a categorical feature's text maps through the manifest's labels → codes (spaces around it and case
  aside, contract.features.category_code); a number is its own code; text never seen in training is NaN
  (it encodes as all zeros inside the model);
- ±inf, or a number beyond the FP32 range, is an error naming the cell;
- a row whose every feature is missing is an error naming the row.
Categorical columns have few distinct values: each distinct text goes through `Model.encode_value`
itself, once, and the codes are gathered by index. Numeric text goes through Arrow's parser; only when
that refuses a cell does the column fall back to `Model.encode_value` per cell, to decide exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contract.features import MISSING, is_missing
from serve.errors import BadRequest
from serve.model import Model

MISSING_TOKENS = pa.array(sorted(MISSING))
SEEN_LIMIT = (
    100_000  # categorical texts remembered per feature; an ID column declared categorical stays bounded
)


class CellError(Exception):
    """A cell that cannot be encoded: its row in the batch (None: the whole column), its column (None: the
    whole row), and why."""

    def __init__(self, row: int | None, column: str | None, reason: str):
        super().__init__(reason if column is None else f"column {column!r}: {reason}")
        self.row, self.column, self.reason = row, column, reason


class BatchEncoder:
    """Encodes batches for one model; remembers the code of each categorical text it has seen."""

    def __init__(self, model: Model):
        self.model = model
        self.names = [f["name"] for f in model.features]
        self.categorical = [f["kind"] == "categorical" for f in model.features]
        self.seen: list[dict[str, float]] = [{} for _ in model.features]  # text → code, per feature

    def encode(self, batch: pa.RecordBatch) -> np.ndarray:
        """(rows, n_features) float32, C order, NaN for missing; raises CellError."""
        # Filled one feature per row of a (features, rows) array, then transposed once: contiguous writes.
        columns = np.empty((len(self.names), batch.num_rows), np.float32)
        given = np.zeros(batch.num_rows, bool)  # rows with some feature not missing
        present = set(batch.schema.names)
        with np.errstate(over="ignore"):  # beyond FP32 becomes inf here and is reported below
            for j, name in enumerate(self.names):
                if name not in present:  # no such column: the feature is missing in every row
                    columns[j] = np.nan
                    continue
                column = batch.column(name)
                if self.categorical[j]:
                    columns[j], known = self.categories(j, column)
                else:
                    columns[j] = self.numbers(j, column)
                    known = ~np.isnan(columns[j])
                given |= known
        if np.isinf(columns).any():
            j, row = map(int, np.argwhere(np.isinf(columns))[0])
            value = batch.column(self.names[j])[row].as_py()
            raise CellError(row, self.names[j], f"{value!r} is infinite or beyond the FP32 range")
        if not given.all():
            taken = ", ".join(self.names)
            raise CellError(
                int(np.argmin(given)), None, f"every feature is missing (the model takes {taken})"
            )
        return np.ascontiguousarray(columns.T)

    def numbers(self, j: int, column: pa.Array) -> np.ndarray:
        if pa.types.is_floating(column.type):
            return column.to_numpy(zero_copy_only=False)  # nulls → NaN
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return self.parse_numbers(j, column)
        if (
            pa.types.is_integer(column.type)
            or pa.types.is_boolean(column.type)
            or pa.types.is_decimal(column.type)
        ):
            return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        if pa.types.is_null(column.type):
            return np.full(len(column), np.nan)
        raise CellError(None, self.names[j], f"type {column.type} is not a number")

    def parse_numbers(self, j: int, column: pa.Array) -> np.ndarray:
        trimmed = pc.utf8_trim_whitespace(column)
        missing = pc.or_kleene(pc.is_in(pc.utf8_lower(trimmed), value_set=MISSING_TOKENS), pc.is_null(column))
        present = pc.if_else(missing, pa.scalar(None, pa.string()), trimmed)
        try:
            return present.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            pass
        # Arrow refused a cell: decide each cell as the runtime does (it accepts "1_000", refuses "abc").
        values = np.empty(len(column))
        for row, text in enumerate(present.to_pylist()):
            values[row] = math.nan if text is None else self.encode_value(j, text, row)
        return values

    def categories(self, j: int, column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(codes, whether each cell is given: not null, not a missing token; an unseen text is given)."""
        if not (pa.types.is_dictionary(column.type) or pa.types.is_string(column.type)):
            if pa.types.is_large_string(column.type):
                column = column.cast(pa.string())
            else:
                codes = self.numbers(j, column)  # numeric codes are their own values
                return codes, ~np.isnan(codes)
        encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        texts = encoded.dictionary.to_pylist()
        codes = np.empty(len(texts) + 1)
        codes[-1] = math.nan  # where the cell is null
        given = np.array([text is not None and not is_missing(text) for text in texts] + [False])
        seen = self.seen[j]
        for k, text in enumerate(texts):
            code = seen.get(text)
            if code is None:
                try:
                    code = self.encode_value(j, text, 0)
                except CellError as exc:
                    row = pc.index(encoded.indices, k).as_py()
                    raise CellError(row, exc.column, exc.reason) from None
                if len(seen) < SEEN_LIMIT:
                    seen[text] = code
            codes[k] = code
        indices = encoded.indices.fill_null(len(texts)).to_numpy(zero_copy_only=False)
        return codes[indices], given[indices]

    def encode_value(self, j: int, text: str, row: int) -> float:
        """The runtime's own rule for one cell; its refusal becomes a CellError for this row."""
        try:
            return self.model.encode_value(j, text, row)
        except BadRequest as exc:
            reason = (
                "is not a number" if "not a number" in exc.message else "is infinite or beyond the FP32 range"
            )
            raise CellError(row, self.names[j], f"{text.strip()!r} {reason}") from None
