"""Parquet tables: pyarrow.dataset fragments (hive partitions become columns), read one record batch at a
time; shared by several processes, the row groups are dealt out in order, about equal rows each, and every
row's position comes from the files' metadata.

A typed column is what its type says: numbers (integers, floats, decimals), `date` / `timestamp` (a date
feature: seconds since the epoch, UTC; a timestamp without a zone is UTC), `bool` (a boolean feature);
a text column is looked at like a CSV column (numbers, ISO dates, yes/no words written as text)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipeline.data.cells import (
    Chunk,
    ColumnSummary,
    clean_text,
    count,
    parse_booleans,
    parse_dates,
    parse_numbers,
    seconds_of,
)
from pipeline.errors import PipelineError

PARQUET_BATCH = 65_536  # rows per Parquet record batch


@dataclass(frozen=True)
class Piece:
    fragment: pa.dataset.Fragment  # a file, or some of its row groups
    path: Path
    first_row: int  # position of its first row in the table
    file_row: int  # row of its first row within its file (0-based)


class ParquetTable:
    format = "parquet"

    def __init__(self, files: list[Path], root: Path | None):
        import pyarrow.dataset as ds  # here: its import is 0.3 s that a CSV table's run need not pay

        try:
            if root is not None:  # a directory: hive partitions become columns
                self.dataset = ds.dataset(root, format="parquet", partitioning="hive")
            else:
                self.dataset = ds.dataset([str(f) for f in files], format="parquet")
            fragments = sorted(self.dataset.get_fragments(), key=lambda f: f.path)
            counts = [f.count_rows() for f in fragments]
        except (pa.ArrowInvalid, OSError) as exc:
            raise PipelineError(f"{(root or files[0])} is not a readable Parquet table ({exc})") from None
        self.files = [Path(f.path) for f in fragments]
        self.columns = list(self.dataset.schema.names)
        starts = [sum(counts[:k]) for k in range(len(counts))]
        self.pieces = [Piece(f, Path(f.path), start, 0) for f, start in zip(fragments, starts)]
        self.rows = sum(counts)
        self.notes: list[str] = []

    def describe(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} Parquet files"

    def estimated_rows(self) -> int:
        """Data rows, from the files' metadata (exact)."""
        return self.rows

    def summarize(self, rows: int = 20_000) -> dict[str, ColumnSummary]:
        """Per column: the kind its type says, or for text what its first rows hold; and, from the
        first rows, whether every value differs (an identifier)."""
        summaries = {}
        for name in self.columns:
            kind = self.dataset.schema.field(name).type
            typed = type_kind(kind)
            if typed is None:
                raise PipelineError(
                    f"column {name!r} has Parquet type {kind}; "
                    "only numbers, text, dates and booleans are read"
                )
            summaries[name] = ColumnSummary(typed=typed)
        try:
            head = self.dataset.head(rows, use_threads=False) if rows else None
        except (pa.ArrowInvalid, OSError) as exc:
            raise PipelineError(f"{self.files[0]} is not a readable Parquet table ({exc})") from None
        for name in self.columns if head is not None else []:
            count(summaries[name], head.column(name).combine_chunks())
        return summaries

    def chunks(
        self, numbers: list[str], text: list[str], dates=(), booleans=(), strict: bool = True
    ) -> Iterator[Chunk]:
        include = [c for c in self.columns if c in numbers or c in text or c in dates or c in booleans]
        for piece in self.pieces:
            position, row = piece.first_row, piece.file_row
            try:
                batches = piece.fragment.to_batches(
                    schema=self.dataset.schema,
                    columns=include,
                    batch_size=PARQUET_BATCH,
                    batch_readahead=1,  # pyarrow's default reads 16 batches ahead: memory, not speed
                    fragment_readahead=1,
                    fragment_scan_options=pa.dataset.ParquetFragmentScanOptions(pre_buffer=False),
                    use_threads=False,
                )
                for batch in batches:
                    locate = parquet_locator(piece.path, row)
                    columns = {}
                    for name in include:
                        column = batch.column(name)
                        typed = type_kind(column.type)
                        if name in text:
                            column = clean_text(column)
                        elif name in dates and typed == "date":
                            column = seconds_of(column)
                        elif name in dates:
                            column = parse_dates(clean_text(column), name, locate)
                        elif name in booleans and typed != "boolean":
                            column = parse_booleans(clean_text(column), name, locate)
                        elif typed in ("numeric", "boolean"):
                            column = column.cast(pa.float64())
                        else:
                            column = parse_numbers(clean_text(column), name, locate)
                        columns[name] = column
                    yield Chunk(columns, position, locate)
                    position += batch.num_rows
                    row += batch.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise PipelineError(f"{piece.path} is not a readable Parquet file ({exc})") from None

    def shard(self, rank: int, world: int, gather=None) -> ParquetTable:
        """This process's part: the row groups whose first row falls in its 1/world of the rows."""
        low, high = self.rows * rank // world, self.rows * (rank + 1) // world
        pieces = []
        for piece in self.pieces:
            file_row = 0
            for group in piece.fragment.row_groups:
                start = piece.first_row + file_row
                if low <= start < high:
                    part = piece.fragment.subset(row_group_ids=[group.id])
                    pieces.append(Piece(part, piece.path, start, file_row))
                file_row += group.num_rows
        shard = copy.copy(self)
        shard.pieces = pieces
        return shard


def parquet_locator(path: Path, first_row: int) -> Callable[[int], str]:
    return lambda i: f"{path.name} row {first_row + i + 1}"


def type_kind(kind: pa.DataType) -> str | None:
    """The kind a Parquet type says: "numeric", "date", "boolean", "" for text; None: not read."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return "date"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return ""
    return None
