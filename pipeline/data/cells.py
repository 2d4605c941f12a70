"""What the readers share: the `Chunk` every reader yields (one record batch, columns typed: numbers as
float64, text as trimmed strings, missing cells null), what a first look at a column counts, and the
cleaning and number parsing of text cells. The missing-value tokens are the artifact's
(`contract.features.MISSING`), so a table means the same to training and to the runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from contract.features import MISSING
from pipeline.errors import PipelineError

NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$"  # after strip, lower


@dataclass(frozen=True)
class Chunk:
    """One record batch of a table, columns already typed (numbers float64, text strings)."""

    columns: dict[str, pa.Array]
    start: int  # position of the first row in the table
    locate: Callable[[int], str]  # row index within the chunk → "line 8" or "part-0.parquet row 3"

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass
class ColumnSummary:
    """What a first look at a column found: how many cells are missing, numbers or other text."""

    missing: int = 0
    numbers: int = 0
    text: int = 0

    @property
    def is_numeric(self) -> bool:
        """Mostly numbers: read as numbers (a stray word is then an error naming its line)."""
        return self.numbers >= self.text


def clean_text(array: pa.Array, tokens_null: bool = False) -> pa.Array:
    """Strings trimmed, with the missing-value tokens (any case, any padding) made null. `tokens_null`:
    the reader already made the unpadded tokens null (CSV's null_values), so a column with nothing to
    trim is done after one comparison."""
    array = array.cast(pa.string())
    trimmed = pc.utf8_trim_whitespace(array)
    if tokens_null and trimmed.equals(array):
        return array
    return pc.if_else(
        pc.is_in(pc.utf8_lower(trimmed), pa.array(MISSING)), pa.scalar(None, pa.string()), trimmed
    )


def count(summary: ColumnSummary, column: pa.Array) -> None:
    cleaned = clean_text(column)
    missing = cleaned.null_count
    numbers = pc.sum(pc.match_substring_regex(pc.utf8_lower(cleaned), NUMBER)).as_py() or 0
    summary.missing += missing
    summary.numbers += numbers
    summary.text += len(cleaned) - missing - numbers


def parse_numbers(text: pa.Array, column: str, locate: Callable[[int], str]) -> pa.Array:
    """Cleaned strings → float64, or the one-line error naming the first cell that is not a number."""
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        pass
    for i, value in enumerate(text.to_pylist()):
        try:
            pa.scalar(value, pa.string()).cast(pa.float64())
        except pa.ArrowInvalid:
            raise PipelineError(
                f"column {column!r} {locate(i)}: {value!r} is not a number "
                "(declare the column categorical or ignored)"
            ) from None
    raise AssertionError("unreachable: the cast failed but every value parses")
