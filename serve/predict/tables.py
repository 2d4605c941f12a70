"""Input tables for batch prediction, read through Apache Arrow one record batch at a time.

A source is a file, a directory or a glob, of CSV or of Parquet files, resolved to its files by
contract.tables (the rule training reads `--data` by, so both read the same files for the same spec).
CSV goes through pyarrow's streaming reader with explicit column types (numeric features as float64,
everything else as text), so nothing is guessed and no type changes halfway through a file; Parquet is
read through a buffered stream, so memory does not grow with the size of its row groups. Hive partition
folders (`city=Paris/`) add their values as text columns. Every batch says where its rows are, so an
error can name the file and the line (CSV) or the row (Parquet). Nothing here holds more than a few
batches.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from contract.errors import ContractError
from contract.features import NULL_TOKENS
from contract.tables import default_delimiter, hive_values, resolve

BLOCK_BYTES = 1 << 20  # CSV bytes per batch (~3,500 rows of 30 numbers); larger blocks cost read-ahead memory
PARQUET_BATCH_ROWS = 8192
PARQUET_BUFFER_BYTES = 1 << 16  # bytes read ahead per column: memory stays flat whatever the row groups
CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


class TableError(Exception):
    """One line for the user about the input table."""


@dataclass
class Chunk:
    batch: pa.RecordBatch  # the wanted columns the file has, named as the model and --keep name them
    path: Path
    first_row: int  # position of the batch's first row among its file's data rows (0-based)
    csv: bool
    file_columns: tuple[str, ...] = ()  # every column of its file (partition columns included)

    def where(self, i: int) -> str:
        """Where row i of the batch is, as a person finds it: a CSV line (the header is line 1; exact
        while no quoted field spans lines) or a Parquet row (1-based)."""
        row = self.first_row + i
        return f"{self.path} line {row + 2}" if self.csv else f"{self.path} row {row + 1}"


def read_chunks(
    data: str, wanted: dict[str, str], delimiter: str | None = None, optional: frozenset = frozenset()
) -> Iterator[Chunk]:
    """Batches of the `wanted` columns (name → "number" or "text") from every file of `data`; a file
    without one of them is an error, unless it is `optional` (then its batches lack it)."""
    try:
        resolved = resolve(data)
    except ContractError as exc:
        raise TableError(str(exc)) from None
    if resolved.format == "parquet":
        yield from parquet_chunks(resolved.files, resolved.root, list(wanted), optional)
        return
    for path in resolved.files:
        sep = delimiter or default_delimiter(path)
        yield from csv_chunks(path, wanted, sep, hive_values(path, resolved.root), optional)


def listing(names, limit: int = 12) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def csv_chunks(
    path: Path, wanted: dict[str, str], delimiter: str, partition: dict, optional: frozenset
) -> Iterator[Chunk]:
    parse = pacsv.ParseOptions(delimiter=delimiter)
    header = csv_header(path, parse)
    names = {name.strip(): name for name in header}  # the runtime matches stripped header names
    file_columns = tuple(dict.fromkeys([*names, *partition]))
    absent = [c for c in wanted if c not in names and c not in partition and c not in optional]
    if absent:
        raise TableError(f"{path} lacks column(s) {', '.join(absent)} (it has: {listing(names)})")
    read = [c for c in wanted if c in names]
    as_text = {c for c in read if wanted[c] == "text"}
    done = 0  # rows already handed out; a restart skips them
    while True:
        types = {names[c]: pa.string() if c in as_text else pa.float64() for c in read}
        convert = pacsv.ConvertOptions(
            column_types=types,
            include_columns=[names[c] for c in read],
            # every capitalisation of the missing tokens (Arrow matches them exactly); a padded one
            # (" NA ") fails the float parse, and that column is then read as text (below)
            null_values=NULL_TOKENS,
            strings_can_be_null=False,  # text cells stay text: the missing-value rule is the runtime's
        )
        options = pacsv.ReadOptions(block_size=BLOCK_BYTES)
        try:
            skip = done
            for batch in pacsv.open_csv(str(path), options, parse, convert):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch = with_partitions(batch.slice(skip), read, partition, wanted)
                skip = 0
                yield Chunk(batch, path, done, csv=True, file_columns=file_columns)
                done += batch.num_rows
            return
        except OSError as exc:
            raise TableError(f"cannot read {path}: {exc}") from None
        except pa.ArrowInvalid as exc:
            column = conversion_column(exc, header)
            if column is None or column.strip() in as_text:
                raise TableError(csv_problem(path, parse, exc)) from None
            # A cell Arrow's float parser refused: read that column as text from here on, so the
            # runtime's exact rules decide (a padded " NA " is missing; "abc" is an error with its line).
            as_text.add(column.strip())


def csv_header(path: Path, parse: pacsv.ParseOptions) -> list[str]:
    try:
        reader = pacsv.open_csv(
            str(path), pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False), parse
        )
    except pa.ArrowInvalid as exc:
        raise TableError(csv_problem(path, parse, exc)) from None
    except OSError as exc:
        raise TableError(f"cannot read {path}: {exc}") from None
    names = reader.schema.names
    reader.close()
    return names


def with_partitions(batch: pa.RecordBatch, read: list[str], partition: dict, wanted) -> pa.RecordBatch:
    """The batch with the wanted partition columns the file's own columns do not have."""
    arrays, names = list(batch.columns), list(read)
    for name, value in partition.items():
        if name not in read and name in wanted:
            arrays.append(pa.array([value] * batch.num_rows, pa.string()))
            names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def conversion_column(exc: pa.ArrowInvalid, header: list[str]) -> str | None:
    match = CONVERSION.search(str(exc))
    if match is None or match.group(2) != "double":
        return None
    return header[int(match.group(1))]


def csv_problem(path: Path, parse: pacsv.ParseOptions, exc: pa.ArrowInvalid) -> str:
    """One line for an Arrow CSV error, with the line number when Arrow knows it."""
    text = str(exc).splitlines()[0]
    if "Empty CSV file" in text:
        return f"{path} is empty"
    match = CONVERSION.search(text)
    if match and match.group(2) in ("string", "utf8"):
        return f"{path}: column #{int(match.group(1)) + 1} is not UTF-8 text"
    if "Expected" in text and "columns, got" in text:
        line, fields, expected = invalid_row(path, parse)
        if line is not None:
            return f"{path} line {line}: {fields} fields where the header has {expected}"
    return f"{path}: {text}"


def invalid_row(path: Path, parse: pacsv.ParseOptions) -> tuple[int | None, int, int]:
    """(line, fields, expected) of the first row with the wrong number of fields: a single-threaded
    rescan, because Arrow only counts lines when it parses in order (the error path only)."""
    found = []

    def handler(row):
        found.append((row.number, row.actual_columns, row.expected_columns))
        return "error"

    options = pacsv.ParseOptions(delimiter=parse.delimiter, invalid_row_handler=handler)
    try:
        for _ in pacsv.open_csv(str(path), pacsv.ReadOptions(use_threads=False), options):
            pass
    except pa.ArrowInvalid:
        pass
    return found[0] if found else (None, 0, 0)


def parquet_chunks(
    files: list[Path], root: Path | None, columns: list[str], optional: frozenset
) -> Iterator[Chunk]:
    import pyarrow.parquet as pq  # here: a CSV run does not pay for importing it

    for path in files:
        partition = hive_values(path, root)
        try:
            # Unbuffered reads decode a whole row group at once (a file written in one group is then read
            # whole); a buffered stream holds about `buffer_size` per column whatever the groups' size.
            source = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
            names = source.schema_arrow.names
            file_columns = tuple(dict.fromkeys([*names, *partition]))
            absent = [c for c in columns if c not in names and c not in partition and c not in optional]
            if absent:
                raise TableError(f"{path} lacks column(s) {', '.join(absent)} (it has: {listing(names)})")
            read = [c for c in columns if c in names]
            done = 0
            # Decoded on the read-ahead thread alone: Arrow's worker threads would each keep allocator
            # caches (measured: peak RSS 250 MB instead of 285 on the bench table), and Parquet decoding
            # is not what limits the rows/s.
            batches = source.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=read, use_threads=False)
            for batch in batches:
                chunk = with_partitions(batch, read, partition, columns)
                yield Chunk(chunk, path, done, csv=False, file_columns=file_columns)
                done += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise TableError(f"{path}: {str(exc).splitlines()[0]}") from None


def read_ahead(chunks: Iterator[Chunk], depth: int = 4) -> Iterator[Chunk]:
    """The same chunks, read on a background thread: pyarrow parses without the GIL, so reading the next
    batches overlaps encoding, inference and writing this one. At most `depth` batches wait."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    return
            hand_over(end)
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)
        finally:
            chunks.close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := waiting.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
