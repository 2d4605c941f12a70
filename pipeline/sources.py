"""Where rows come from: CSV and Parquet tables read through Apache Arrow, one record batch at a time.

A table is a file, a directory (hive partitions `key=value/` included) or a glob; several files are one
table, in sorted path order. Columns are read with explicit types, so nothing is guessed twice: numbers
as float64 (missing cells null), text as trimmed strings (missing cells null). A row's *position* is its
index among the table's data rows in that order; the streamed train / validation / test split is a
function of it, so it must not depend on how the reading is cut into batches or shards.

CSV is parsed by pyarrow's streaming reader; a cell that is not a number in a numeric column, a ragged
row or invalid UTF-8 stops with one line naming the column and the line. Parquet goes through
pyarrow.dataset, fragment by fragment.
"""

from __future__ import annotations

import glob
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds

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


def clean_text(array: pa.Array) -> pa.Array:
    """Strings trimmed, with the missing-value tokens (any case, any padding) made null."""
    array = pc.utf8_trim_whitespace(array.cast(pa.string()))
    return pc.if_else(pc.is_in(pc.utf8_lower(array), pa.array(MISSING)), pa.scalar(None, pa.string()), array)


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


class CsvTable:
    format = "csv"

    def __init__(self, files: list[Path], root: Path | None, delimiter: str):
        self.files, self.delimiter = files, delimiter
        header = self.header(files[0])
        for path in files[1:]:
            if self.header(path) != header:
                raise PipelineError(f"{path.name}: its header differs from {files[0].name}'s")
        # hive partitions: a folder `key=value/` gives every row below it the column `key`
        self.partitions = [hive_values(path, root) for path in files]
        keys = list(dict.fromkeys(k for values in self.partitions for k in values))
        self.header_names = header
        self.columns = header + [k for k in keys if k not in header]

    def describe(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} CSV files"

    def estimated_rows(self) -> int:
        """Data rows, estimated from the size of the files and the length of the first lines."""
        with self.files[0].open("rb") as f:
            sample = f.read(1 << 20)
        lines = max(sample.count(b"\n") - 1, 1)  # without the header
        per_row = len(sample) / lines if len(sample) == 1 << 20 else max(len(sample), 1) / lines
        return int(sum(p.stat().st_size for p in self.files) / per_row)

    def header(self, path: Path) -> list[str]:
        check_utf8(path)
        reader = self.open(path, {}, [], block_size=1 << 16)
        names = [c.strip() for c in reader.schema.names]
        duplicated = sorted({c for c in names if names.count(c) > 1})
        if duplicated:
            raise PipelineError(f"{path}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
        if "" in names:
            raise PipelineError(f"{path}: column {names.index('') + 1} of the header has no name")
        return names

    def open(self, path: Path, types: dict, include: list[str], block_size: int = 0, strict: bool = False):
        """pyarrow's streaming reader over `path`; single-threaded, so parse errors carry the row."""
        try:
            return pa_csv.open_csv(
                path,
                read_options=pa_csv.ReadOptions(use_threads=False, block_size=block_size or CSV_BLOCK),
                parse_options=pa_csv.ParseOptions(delimiter=self.delimiter),
                convert_options=pa_csv.ConvertOptions(
                    column_types=types,
                    include_columns=include,
                    null_values=NULL_TOKENS,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            if strict and "conversion error to double" in str(exc):
                raise NumberRefused() from None
            raise csv_error(path, exc) from None

    def summarize(self, rows: int = 20_000) -> dict[str, ColumnSummary]:
        """Missing / number / text counts per column over the first rows of the first file."""
        header = self.header_names
        reader = self.open(self.files[0], dict.fromkeys(header, pa.string()), header)
        summaries = {name: ColumnSummary() for name in self.columns}
        seen = 0
        for batch in batches_of(reader, self.files[0]):
            for name, column in zip(header, batch.columns):
                count(summaries[name], column)
            seen += batch.num_rows
            if seen >= rows:
                break
        for name in self.columns[len(header) :]:
            count(summaries[name], pa.array([p.get(name) for p in self.partitions], pa.string()))
        return summaries

    def chunks(self, numbers: list[str], text: list[str], strict: bool = True) -> Iterator[Chunk]:
        """Record batches with `numbers` as float64 and `text` as cleaned strings. `strict` lets
        pyarrow parse the numbers (fast); a cell it refuses reruns the read with numbers as text, which
        accepts padded missing-value tokens and names the line of a real error."""
        try:
            yield from self.read(numbers, text, strict)
        except NumberRefused:
            yield from self.read(numbers, text, strict=False)

    def read(self, numbers: list[str], text: list[str], strict: bool) -> Iterator[Chunk]:
        types = {name: pa.float64() if strict else pa.string() for name in numbers}
        types.update(dict.fromkeys(text, pa.string()))
        include = [c for c in self.columns if c in types]
        start = 0
        for path, partition in zip(self.files, self.partitions):
            in_file = [c for c in include if c in self.header_names]
            reader = self.open(path, types, in_file, strict=strict)
            line = 2  # the header is line 1; pyarrow skips blank lines, and so does the count
            for batch in batches_of(reader, path, strict):
                locate = self.locator(path, line)
                columns = {}
                for name in include:
                    if name not in self.header_names:  # a partition column
                        column = pa.array([partition.get(name)] * batch.num_rows, pa.string())
                    else:
                        column = batch.column(name)
                    if name in text:
                        column = clean_text(column)
                    elif not strict:
                        column = parse_numbers(clean_text(column), name, locate)
                    columns[name] = column
                yield Chunk(columns, start, locate)
                start += batch.num_rows
                line += batch.num_rows
            if line == 2 and len(self.files) == 1:
                raise PipelineError(f"{path} has a header but no data rows")

    def locator(self, path: Path, first_line: int) -> Callable[[int], str]:
        prefix = f"{path.name} " if len(self.files) > 1 else ""
        return lambda i: f"{prefix}line {first_line + i}"


def hive_values(path: Path, root: Path | None) -> dict[str, str]:
    if root is None:
        return {}
    parts = path.relative_to(root).parent.parts
    return dict(part.split("=", 1) for part in parts if "=" in part)


class NumberRefused(Exception):
    """pyarrow refused a cell of a numeric column: read again with numbers as text (see `chunks`)."""


def batches_of(reader, path: Path, strict: bool = True) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if strict and "conversion error to double" in str(exc):
                raise NumberRefused() from None
            raise csv_error(path, exc) from None
        yield batch


def check_utf8(path: Path, size: int = 1 << 16) -> None:
    """The first bytes must be UTF-8 text (the rest is checked as it is read)."""
    with path.open("rb") as f:
        head = f.read(size)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the sample
            raise PipelineError(f"{path} is not UTF-8 text (byte {exc.start})") from None


ROW_ERROR = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def csv_error(path: Path, exc: Exception) -> PipelineError:
    message = str(exc)
    ragged = ROW_ERROR.search(message)
    if ragged:
        line, expected, got = ragged.groups()
        return PipelineError(f"{path} line {line}: {got} fields where the header has {expected}")
    if "Empty CSV file" in message:
        return PipelineError(f"{path} is empty")
    if "UTF8" in message:
        return PipelineError(f"{path} is not UTF-8 text")
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return PipelineError(f"{path} is not a readable CSV ({first[:200]})")


class ParquetTable:
    format = "parquet"

    def __init__(self, files: list[Path], root: Path | None):
        try:
            if root is not None:  # a directory: hive partitions become columns
                self.dataset = ds.dataset(root, format="parquet", partitioning="hive")
            else:
                self.dataset = ds.dataset([str(f) for f in files], format="parquet")
        except (pa.ArrowInvalid, OSError) as exc:
            raise PipelineError(f"{(root or files[0])} is not a readable Parquet table ({exc})") from None
        self.fragments = sorted(self.dataset.get_fragments(), key=lambda f: f.path)
        self.files = [Path(f.path) for f in self.fragments]
        self.columns = list(self.dataset.schema.names)

    def describe(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} Parquet files"

    def estimated_rows(self) -> int:
        """Data rows, from the files' metadata (exact)."""
        return sum(f.count_rows() for f in self.fragments)

    def summarize(self, rows: int = 0) -> dict[str, ColumnSummary]:
        summaries = {}
        for name in self.columns:
            kind = self.dataset.schema.field(name).type
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)
            if not (text or is_number_type(kind)):
                raise PipelineError(
                    f"column {name!r} has Parquet type {kind}; only numbers and text are read"
                )
            summaries[name] = ColumnSummary(text=1) if text else ColumnSummary(numbers=1)  # typed columns
        return summaries

    def chunks(self, numbers: list[str], text: list[str], strict: bool = True) -> Iterator[Chunk]:
        include = [c for c in self.columns if c in numbers or c in text]
        start = 0
        for fragment in self.fragments:
            path, row = Path(fragment.path), 0
            try:
                batches = fragment.to_batches(
                    schema=self.dataset.schema, columns=include, batch_size=PARQUET_BATCH, use_threads=False
                )
                for batch in batches:
                    locate = parquet_locator(path, row)
                    columns = {}
                    for name in include:
                        column = batch.column(name)
                        if name in text:
                            column = clean_text(column)
                        elif not is_number_type(column.type):
                            column = parse_numbers(clean_text(column), name, locate)
                        columns[name] = column.cast(pa.float64()) if name in numbers else column
                    yield Chunk(columns, start, locate)
                    start += batch.num_rows
                    row += batch.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise PipelineError(f"{path} is not a readable Parquet file ({exc})") from None


def parquet_locator(path: Path, first_row: int) -> Callable[[int], str]:
    return lambda i: f"{path.name} row {first_row + i + 1}"


def is_number_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    open: Callable  # (files, root directory or None, delimiter) → table


FORMATS = (
    Format("csv", (".csv", ".tsv", ".txt"), lambda files, root, delimiter: CsvTable(files, root, delimiter)),
    Format("parquet", (".parquet", ".pq"), lambda files, root, delimiter: ParquetTable(files, root)),
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
