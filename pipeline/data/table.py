"""A table for training: the files a `--data` spec names (`contract.tables.resolve`: one rule for
training and batch prediction), opened by the reader of their format, read one record batch at a time.

Every reader has the same shape (`Table`): its columns, a first look at them (`summarize`), typed
record batches (`chunks`) and this process's shard of the rows (`shard`). A row's *position* is its index
among the table's data rows in sorted file order; the streamed train / validation / test split is a
function of it, so it must not depend on how the reading is cut into batches or shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from contract.errors import ContractError
from contract.tables import delimiter_from, resolve
from pipeline.data.cells import Chunk, ColumnSummary
from pipeline.data.csv_table import CsvTable
from pipeline.data.parquet_table import ParquetTable
from pipeline.errors import PipelineError


class Table(Protocol):
    format: str  # "csv" | "parquet"
    files: list[Path]
    columns: list[str]
    notes: list[str]  # how the table was found to be written (separator, decimal commas), said once

    def describe(self) -> str: ...
    def estimated_rows(self) -> int: ...
    def summarize(self) -> dict[str, ColumnSummary]: ...
    def chunks(self, numbers: list[str], text: list[str], dates=(), booleans=()) -> Iterator[Chunk]: ...
    def shard(self, rank: int, world: int, gather: Callable) -> Table: ...


READERS = {  # format → (files, root folder or None, delimiter, decimal point) → Table
    "csv": lambda files, root, delimiter, decimal: CsvTable(files, root, delimiter, decimal),
    "parquet": lambda files, root, delimiter, decimal: ParquetTable(files, root),
}


def open_table(spec: str, delimiter: str = "", decimal: str = "") -> Table:
    """The table at `spec` (a file, a folder or a glob), ready to summarize and read. `delimiter` and
    `decimal`: as the user gave them (empty: found out from the file)."""
    try:
        resolved = resolve(spec)
        delimiter = delimiter_from(delimiter) if delimiter else ""
    except ContractError as exc:
        raise PipelineError(str(exc)) from None
    if resolved.files[0].stat().st_size == 0 and resolved.format == "csv":
        raise PipelineError(f"{resolved.files[0]} is empty")
    return READERS[resolved.format](resolved.files, resolved.root, delimiter, decimal)
