"""Where rows come from: CSV and Parquet tables read through Apache Arrow, one record batch at a time.

A table is a file, a directory (hive partitions `key=value/` included) or a glob; several files are one
table, in sorted path order. `FORMATS` maps a file's suffix to its reader (`pipeline.csv_source`,
`pipeline.parquet_source`); both give the same `Chunk`s: numbers as float64 (missing cells null), text
as trimmed strings (missing cells null), read with explicit types so nothing is guessed twice. A row's
*position* is its index among the table's data rows in that order; the streamed train / validation /
test split is a function of it, so it must not depend on how the reading is cut into batches or shards.
A cell that is not a number in a numeric column stops with one line naming the column and the line (CSV)
or the file and row (Parquet).
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import PipelineError

MISSING = ("", "na", "nan", "n/a", "?", "null", "none")  # compared lower-cased and stripped
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$"  # after strip, lower
CSV_BLOCK = 1 << 20  # bytes per CSV record batch (~3,000 rows of 40 columns)
PARQUET_BATCH = 65_536  # rows per Parquet record batch


def case_variants(token: str) -> list[str]:
    """Every upper/lower-case spelling of `token` (pyarrow matches null tokens exactly)."""
    options = [{c.lower(), c.upper()} for c in token]
    return ["".join(p) for p in itertools.product(*options)]


NULL_TOKENS = sorted({v for token in MISSING for v in case_variants(token)})


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


def hive_values(path: Path, root: Path | None) -> dict[str, str]:
    if root is None:
        return {}
    parts = path.relative_to(root).parent.parts
    return dict(part.split("=", 1) for part in parts if "=" in part)


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    open: Callable  # (files, root directory or None, delimiter) → table


def csv_table(files, root, delimiter):
    from pipeline.csv_source import CsvTable

    return CsvTable(files, root, delimiter)


def parquet_table(files, root, delimiter):
    from pipeline.parquet_source import ParquetTable

    return ParquetTable(files, root)


FORMATS = (
    Format("csv", (".csv", ".tsv", ".txt"), csv_table),
    Format("parquet", (".parquet", ".pq"), parquet_table),
)


@dataclass
class Resolved:
    files: list[Path]
    root: Path | None = None  # the directory given, if one was
    format: Format = field(default=FORMATS[0])


def resolve(spec: str) -> Resolved:
    """A file, a directory or a glob → the data files in sorted order, and their format."""
    path = Path(spec)
    if any(c in spec for c in "*?["):
        files, root = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()), None
        if not files:
            raise PipelineError(f"no file matches {spec}")
    elif path.is_dir():
        files, root = sorted(p for p in path.rglob("*") if p.is_file() and not hidden(p, path)), path
        files = [f for f in files if format_of(f)]
        if not files:
            raise PipelineError(f"{path} holds no .csv or .parquet file")
    elif path.exists():
        files, root = [path], None
    else:
        raise PipelineError(f"no such file: {path}")
    formats = {format_of(f).name if format_of(f) else "csv" for f in files}
    if len(formats) > 1:
        raise PipelineError(f"{spec} mixes CSV and Parquet files; give one format")
    (name,) = formats
    return Resolved(files, root, next(f for f in FORMATS if f.name == name))


def hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def format_of(path: Path) -> Format | None:
    return next((f for f in FORMATS if path.suffix.lower() in f.suffixes), None)


def open_table(spec: str, delimiter: str = ","):
    """The table at `spec` (see `resolve`), ready to summarize and read."""
    resolved = resolve(spec)
    if resolved.files[0].stat().st_size == 0 and resolved.format.name == "csv":
        raise PipelineError(f"{resolved.files[0]} is empty")
    return resolved.format.open(resolved.files, resolved.root, delimiter)
