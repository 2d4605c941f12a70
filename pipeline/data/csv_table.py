"""CSV tables: pyarrow's streaming reader over whole files, or over one process's byte range of them.

A table read by one process is its files in order, each parsed from its header. A table shared by several
processes is cut into byte ranges at line ends, one range per process; each process counts the lines of
its own range so every row's position (and line number) is the same as in a one-process read, and checks
the count against what it parsed (a line break inside a quoted field would shift every position after it).
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from contract.features import NULL_TOKENS
from contract.tables import default_delimiter, hive_values, is_compressed
from pipeline.data.cells import Chunk, ColumnSummary, clean_text, count, parse_numbers
from pipeline.errors import PipelineError

CSV_BLOCK = 1 << 20  # bytes per CSV record batch (~3,000 rows of 40 columns)
COUNT_BLOCK = 16 << 20  # bytes read at a time when counting lines
COMPRESSION_GUESS = 5  # text bytes per compressed byte, to estimate a compressed file's rows


@dataclass(frozen=True)
class Segment:
    file: int  # index into the table's files
    start: int = 0  # byte offset of the first row; 0: the whole file, header first
    stop: int | None = None  # byte offset after the last row; None: to the end of the file
    first_row: int = -1  # position of the first row in the table; -1: counted while reading
    first_line: int = 2  # line number of the first row in its file
    rows: int = -1  # rows in the segment, when counted beforehand


class ByteRange(io.RawIOBase):
    """Bytes [start, stop) of a file, as a readable stream."""

    def __init__(self, path: Path, start: int, stop: int):
        self.path = path
        self.file = path.open("rb")
        self.file.seek(start)
        self.left = stop - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.file.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        self.file.close()
        super().close()


class CsvTable:
    format = "csv"

    def __init__(self, files: list[Path], root: Path | None, delimiter: str = ""):
        self.files, self.delimiter = files, delimiter  # "" : each file's by its suffix
        header = self.header(files[0])
        for path in files[1:]:
            if self.header(path) != header:
                raise PipelineError(f"{path.name}: its header differs from {files[0].name}'s")
        # hive partitions: a folder `key=value/` gives every row below it the column `key`
        self.partitions = [hive_values(path, root) for path in files]
        keys = list(dict.fromkeys(k for values in self.partitions for k in values))
        self.header_names = header
        self.columns = header + [k for k in keys if k not in header]
        self.segments = [Segment(k) for k in range(len(files))]

    def describe(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} CSV files"

    def estimated_rows(self) -> int:
        """Data rows, estimated from the size of the files and the length of the first lines."""
        sample = head_bytes(self.files[0], 1 << 20)
        per_row = len(sample) / max(sample.count(b"\n") - 1, 1)  # the header is not a row
        size = sum(p.stat().st_size * (COMPRESSION_GUESS if is_compressed(p) else 1) for p in self.files)
        return int(size / max(per_row, 1))

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

    def open(
        self, source, types: dict, include: list[str], block_size: int = 0, strict: bool = False, names=None
    ):
        """pyarrow's streaming reader; single-threaded, so parse errors carry the row. `names`: the
        column names of a source without its header line."""
        path = source if isinstance(source, Path) else source.path
        try:
            return pa_csv.open_csv(
                source,
                read_options=pa_csv.ReadOptions(
                    use_threads=False, block_size=block_size or CSV_BLOCK, column_names=names
                ),
                parse_options=pa_csv.ParseOptions(delimiter=self.delimiter or default_delimiter(path)),
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
        in_file = [c for c in include if c in self.header_names]
        position = 0
        for segment in self.segments:
            path, partition = self.files[segment.file], self.partitions[segment.file]
            if segment.first_row >= 0:
                position = segment.first_row
            if segment.stop is None:
                reader = self.open(path, types, in_file, strict=strict)
            else:
                source = ByteRange(path, segment.start, segment.stop)
                reader = self.open(source, types, in_file, strict=strict, names=self.header_names)
            line, read = segment.first_line, 0
            offset = 0 if segment.stop is None else segment.first_line - 1  # pyarrow's row 1 → this line
            for batch in batches_of(reader, path, strict, offset):
                locate = self.locator(path, line)
                columns = {}
                for name in include:
                    if name not in self.header_names:  # a partition column
                        column = pa.array([partition.get(name)] * batch.num_rows, pa.string())
                    else:
                        column = batch.column(name)
                    if name in text:
                        column = clean_text(column, tokens_null=name in self.header_names)
                    elif not strict:
                        column = parse_numbers(clean_text(column), name, locate)
                    columns[name] = column
                yield Chunk(columns, position, locate)
                position += batch.num_rows
                line += batch.num_rows
                read += batch.num_rows
            if segment.rows >= 0 and read != segment.rows:
                raise PipelineError(
                    f"{path}: {read} rows parsed where its bytes {segment.start}-{segment.stop} hold "
                    f"{segment.rows} lines (blank lines or line breaks inside quoted fields); to train on "
                    "several processes, remove them or convert the table to Parquet"
                )
            if read == 0 and len(self.files) == 1 and segment.stop is None:
                raise PipelineError(f"{path} has a header but no data rows")

    def locator(self, path: Path, first_line: int) -> Callable[[int], str]:
        prefix = f"{path.name} " if len(self.files) > 1 else ""
        return lambda i: f"{prefix}line {first_line + i}"

    def shard(self, rank: int, world: int, gather) -> CsvTable:
        """This process's part of the table: one of `world` byte ranges of about equal size, cut at line
        ends, with every row's position counted (`gather`: every rank's value, in rank order)."""
        if any(is_compressed(path) for path in self.files):
            raise PipelineError(
                f"{self.describe()}: a compressed CSV cannot be cut into byte ranges for several processes; "
                "decompress it or convert the table to Parquet"
            )
        spans = [(header_end(path), path.stat().st_size) for path in self.files]
        total = sum(stop - start for start, stop in spans)
        cuts = [self.cut(spans, total * r // world) for r in (rank, rank + 1)]
        mine = []
        for k, (start, stop) in enumerate(spans):
            low = max(start, cuts[0][1]) if k == cuts[0][0] else start
            high = min(stop, cuts[1][1]) if k == cuts[1][0] else stop
            if cuts[0][0] <= k <= cuts[1][0] and low < high:
                mine.append(Segment(k, low, high, rows=count_lines(self.files[k], low, high)))
        everyone = gather([(s.file, s.start, s.rows) for s in mine])
        ordered = sorted(item for part in everyone for item in part)  # file order, then byte order
        segments = []
        position, lines = 0, {}
        for file, start, rows in ordered:
            line = lines.get(file, 2)
            for segment in mine:
                if (segment.file, segment.start) == (file, start):
                    segments.append(replace(segment, first_row=position, first_line=line))
            position += rows
            lines[file] = line + rows
        shard = copy.copy(self)
        shard.segments = segments
        return shard

    def cut(self, spans: list[tuple[int, int]], offset: int) -> tuple[int, int]:
        """(file, byte) where the row holding data byte `offset` of the table starts after it: the start
        of the next line, or of the next file's data."""
        for k, (start, stop) in enumerate(spans):
            if offset < stop - start:
                return (k, start) if offset == 0 else (k, next_line(self.files[k], start + offset, stop))
            offset -= stop - start
        return len(spans) - 1, spans[-1][1]


def header_end(path: Path) -> int:
    """Byte offset just after the header line."""
    with path.open("rb") as f:
        return len(f.readline())


def next_line(path: Path, offset: int, stop: int) -> int:
    """Offset of the first line that starts at or after `offset` (`stop` if none does)."""
    with path.open("rb") as f:
        f.seek(offset - 1)
        while f.tell() < stop:
            block = f.read(1 << 16)
            found = block.find(b"\n")
            if found >= 0:
                return min(f.tell() - len(block) + found + 1, stop)
            if not block:
                break
    return stop


def count_lines(path: Path, start: int, stop: int) -> int:
    """Rows in bytes [start, stop): line ends, plus a last line without one."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        f.seek(start)
        left = stop - start
        while left > 0:
            block = f.read(min(COUNT_BLOCK, left))
            if not block:
                break
            lines += block.count(b"\n")
            last, left = block[-1:], left - len(block)
    return lines + (last != b"\n")


class NumberRefused(Exception):
    """pyarrow refused a cell of a numeric column: read again with numbers as text (see `chunks`)."""


def batches_of(reader, path: Path, strict: bool = True, line_offset: int = 0) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if strict and "conversion error to double" in str(exc):
                raise NumberRefused() from None
            raise csv_error(path, exc, line_offset) from None
        yield batch


def head_bytes(path: Path, size: int) -> bytes:
    """The first `size` bytes of the file's text (decompressed when the file is)."""
    if is_compressed(path):
        with pa.input_stream(str(path), compression="detect") as stream:
            return stream.read(size)
    with path.open("rb") as f:
        return f.read(size)


def check_utf8(path: Path, size: int = 1 << 16) -> None:
    """The first bytes must be UTF-8 text (the rest is checked as it is read)."""
    head = head_bytes(path, size)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the sample
            raise PipelineError(f"{path} is not UTF-8 text (byte {exc.start})") from None


ROW_ERROR = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def csv_error(path: Path, exc: Exception, line_offset: int = 0) -> PipelineError:
    message = str(exc)
    ragged = ROW_ERROR.search(message)
    if ragged:
        row, expected, got = ragged.groups()
        line = int(row) + line_offset
        return PipelineError(f"{path} line {line}: {got} fields where the header has {expected}")
    if "Empty CSV file" in message:
        return PipelineError(f"{path} is empty")
    if "UTF8" in message:
        return PipelineError(f"{path} is not UTF-8 text")
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return PipelineError(f"{path} is not a readable CSV ({first[:200]})")
