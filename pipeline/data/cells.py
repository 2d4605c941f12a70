"""What the readers share: the `Chunk` every reader yields (one record batch, columns typed: numbers,
dates and booleans as float64, text as trimmed strings, missing cells null), what a first look at a
column counts, and the cleaning and parsing of text cells. The missing-value tokens, the date and
yes/no rules are the artifact's (`contract.features`), and how numbers are written (decimal commas,
thousands separators) the table rule's (`contract.tables`), so a table means the same to training and
to the runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from contract.features import (
    BOOLEAN_WORDS,
    DATE,
    FALSE_WORDS,
    MISSING,
    TIME,
    TRUE_WORDS,
    ZONE,
    date_seconds,
)
from contract.tables import COMMA_DECIMAL, GROUPED, INTEGER
from pipeline.errors import PipelineError

NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$"  # after strip, lower
ZONED = rf"{TIME}{ZONE}$"  # a time with a zone (parsed UTC-aware; the others naive, as UTC)
LONG_FRACTION = r"(\.\d{6})\d+"  # pyarrow parses microseconds at most; finer digits are dropped


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
    """What a first look at a column found: how many cells are missing, numbers (and how they are
    written), dates, yes/no words or other text, and whether every value differs (an identifier)."""

    missing: int = 0
    numbers: int = 0  # 12, -3.5, 1e3 (and nan / inf words)
    integers: int = 0  # whole numbers among `numbers`
    comma_decimals: int = 0  # 3,75 (also 3,750)
    grouped: int = 0  # 3,750 and 1,234,567.5
    commas: int = 0  # either of the two (they overlap: 3,750)
    dates: int = 0  # ISO 8601 (contract.features.DATE)
    booleans: int = 0  # true / false / yes / no, any case
    text: int = 0  # anything else
    typed: str = ""  # Parquet: the kind its type says ("numeric", "date", "boolean"); "" for text
    distinct: set | None = field(default_factory=set)  # the values, while most differ (else None)
    repeats: int = 0  # values seen before in the column

    @property
    def present(self) -> int:
        return self.numbers + self.commas + self.dates + self.booleans + self.text

    @property
    def decimal_comma(self) -> bool:
        """Every value a comma-decimal number (3,75) or a whole number, and some of them the former."""
        return self.comma_decimals > 0 and self.integers + self.comma_decimals == self.present

    @property
    def thousands(self) -> bool:
        """Every value a number, some of them with thousands separators (3,750)."""
        return self.grouped > 0 and self.numbers + self.grouped == self.present

    def kind(self, decimal: str = ".") -> str:
        """ "numeric", "date", "boolean" or "text". Mostly numbers (or dates) is numeric (a date column):
        a stray value is then an error naming its line; yes/no words only, boolean."""
        if self.typed:
            return self.typed
        present = self.present
        if self.booleans and self.booleans == present:
            return "boolean"
        if self.dates and self.dates >= present - self.dates:
            return "date"
        if decimal == ",":
            numbers = self.integers + self.comma_decimals
        else:
            numbers = self.numbers + (self.grouped if self.thousands else 0)
        return "numeric" if numbers >= present - numbers else "text"

    @property
    def unique(self) -> bool:
        """A different value on every row."""
        return self.distinct is not None and self.repeats == 0


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


def matches(values: pa.Array, pattern: str) -> int:
    return pc.sum(pc.match_substring_regex(values, pattern)).as_py() or 0


def count(summary: ColumnSummary, column: pa.Array) -> None:
    """Add a batch of a column (any type: it is read as its text) to its summary."""
    cleaned = clean_text(column)
    present = cleaned.drop_null()
    lower = pc.utf8_lower(present)
    numbers = matches(lower, NUMBER)
    integers = matches(present, INTEGER)
    with_commas = [pc.match_substring_regex(present, pattern) for pattern in (COMMA_DECIMAL, GROUPED)]
    commas = pc.sum(pc.or_(*with_commas)).as_py() or 0
    summary.missing += len(cleaned) - len(present)
    summary.numbers += numbers
    summary.integers += integers
    summary.comma_decimals += matches(present, COMMA_DECIMAL)
    summary.grouped += matches(present, GROUPED)
    summary.commas += commas
    dates = matches(present, DATE)
    booleans = pc.sum(pc.is_in(lower, pa.array(BOOLEAN_WORDS))).as_py() or 0
    summary.dates += dates
    summary.booleans += booleans
    summary.text += len(present) - numbers - commas - dates - booleans
    if summary.distinct is None:
        return
    if numbers > integers or dates or booleans:  # measurements, dates and flags are not identifiers
        summary.distinct = None
        return
    values = present.to_pylist()
    before = len(summary.distinct)
    summary.distinct.update(values)
    summary.repeats += before + len(values) - len(summary.distinct)
    if summary.repeats * 2 > summary.present:  # mostly repeated values: no kind of identifier
        summary.distinct = None


def rewrite_numbers(text: pa.Array, decimal: str = ".", grouped: bool = False) -> pa.Array:
    """Numbers as pyarrow parses them: 3,75 → 3.75 (`decimal` ","), 3,750 → 3750 (`grouped`)."""
    if decimal == ",":
        return pc.replace_substring(text, ",", ".")
    if grouped:
        return pc.if_else(pc.match_substring_regex(text, GROUPED), pc.replace_substring(text, ",", ""), text)
    return text


def parse_numbers(
    text: pa.Array, column: str, locate: Callable[[int], str], decimal: str = ".", grouped: bool = False
) -> pa.Array:
    """Cleaned strings → float64, or the one-line error naming the first cell that is not a number.
    `decimal` "," reads 3,75 as 3.75; `grouped` reads 3,750 as 3750."""
    written = rewrite_numbers(text, decimal, grouped)
    try:
        return pc.cast(written, pa.float64())
    except pa.ArrowInvalid:
        pass
    for i, value in enumerate(written.to_pylist()):
        try:
            pa.scalar(value, pa.string()).cast(pa.float64())
        except pa.ArrowInvalid:
            raise PipelineError(
                f"column {column!r} {locate(i)}: {text[i].as_py()!r} is not a number "
                "(declare the column categorical or ignored)"
            ) from None
    raise AssertionError("unreachable: the cast failed but every value parses")


def parse_dates(text: pa.Array, column: str, locate: Callable[[int], str]) -> pa.Array:
    """Cleaned ISO 8601 strings → float64 seconds since the epoch, UTC (a time without a zone is UTC),
    through pyarrow's parser; or the one-line error naming the first cell that is not a date."""
    text = pc.replace_substring_regex(text, LONG_FRACTION, r"\1")
    zoned = pc.match_substring_regex(text, ZONED)
    none = pa.scalar(None, pa.string())
    try:
        naive = pc.if_else(zoned, none, text).cast(pa.timestamp("us"))
        aware = pc.if_else(zoned, text, none).cast(pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        return parse_dates_one_by_one(text, column, locate)
    micros = pc.coalesce(naive.cast(pa.int64()), aware.cast(pa.int64()))
    return pc.divide(micros.cast(pa.float64(), safe=False), 1e6)  # beyond 2^53 µs: rounded, not refused


def seconds_of(column: pa.Array) -> pa.Array:
    """A date or timestamp column (Parquet's) → float64 seconds since the epoch, UTC (a timestamp
    without a zone is taken as UTC)."""
    kind = column.type
    if pa.types.is_date32(kind):
        return pc.multiply(column.cast(pa.int32()).cast(pa.float64()), 86400.0)
    if pa.types.is_date64(kind):
        per_second, ticks = 1e3, column.cast(pa.int64())
    else:
        per_second, ticks = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[kind.unit], column.cast(pa.int64())
    return pc.divide(ticks.cast(pa.float64(), safe=False), per_second)


def parse_dates_one_by_one(text: pa.Array, column: str, locate: Callable[[int], str]) -> pa.Array:
    """The slow path, for a batch pyarrow refused: each cell by the contract's own rule (the same
    seconds), so the error names the first cell that is not a date."""
    values = []
    for i, value in enumerate(text.to_pylist()):
        try:
            values.append(None if value is None else date_seconds(value))
        except ValueError as exc:
            raise PipelineError(f"column {column!r} {locate(i)}: {exc}") from None
    return pa.array(values, pa.float64())


def parse_booleans(text: pa.Array, column: str, locate: Callable[[int], str]) -> pa.Array:
    """Cleaned strings → 1.0 (true, yes, 1) / 0.0 (false, no, 0), any case; or the one-line error
    naming the first cell that is neither."""
    lower = pc.utf8_lower(text)
    true = pc.is_in(lower, pa.array([*TRUE_WORDS, "1"]))
    false = pc.is_in(lower, pa.array([*FALSE_WORDS, "0"]))
    refused = pc.and_(pc.is_valid(text), pc.invert(pc.or_(true, false)))
    if pc.any(refused).as_py():
        i = pc.index(refused, True).as_py()
        raise PipelineError(
            f"column {column!r} {locate(i)}: {text[i].as_py()!r} is not true/false or yes/no "
            "(declare the column categorical or ignored)"
        )
    return pc.if_else(true, 1.0, pc.if_else(false, 0.0, pa.scalar(None, pa.float64())))
