"""Parquet tables: pyarrow.dataset fragments (hive partitions become columns), read one record batch at a
time; shared by several processes, the row groups are dealt out in order, about equal rows each, and every
row's position comes from the files' metadata."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.data.cells import Chunk, ColumnSummary, clean_text, parse_numbers
from pipeline.errors import PipelineError

PARQUET_BATCH = 65_536  # rows per Parquet record batch


@dataclass(frozen=True)
class Piece:
    fragment: ds.Fragment  # a file, or some of its row groups
    path: Path
    first_row: int  # position of its first row in the table
    file_row: int  # row of its first row within its file (0-based)


class ParquetTable:
    format = "parquet"

    def __init__(self, files: list[Path], root: Path | None):
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

    def describe(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} Parquet files"

    def estimated_rows(self) -> int:
        """Data rows, from the files' metadata (exact)."""
        return self.rows

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
        for piece in self.pieces:
            position, row = piece.first_row, piece.file_row
            try:
                batches = piece.fragment.to_batches(
                    schema=self.dataset.schema,
                    columns=include,
                    batch_size=PARQUET_BATCH,
                    batch_readahead=1,  # pyarrow's default reads 16 batches ahead: memory, not speed
                    fragment_readahead=1,
                    fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
                    use_threads=False,
                )
                for batch in batches:
                    locate = parquet_locator(piece.path, row)
                    columns = {}
                    for name in include:
                        column = batch.column(name)
                        if name in text:
                            column = clean_text(column)
                        elif not is_number_type(column.type):
                            column = parse_numbers(clean_text(column), name, locate)
                        columns[name] = column.cast(pa.float64()) if name in numbers else column
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


def is_number_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
