"""Input tables for batch prediction, read through Apache Arrow one record batch at a time.

A source is a file, a directory or a glob, of CSV or of Parquet files. CSV goes through pyarrow's
streaming reader with explicit column types (numeric features as float64, everything else as text), so
nothing is guessed and no type changes halfway through a file; Parquet is read through a buffered
stream, so memory does not grow with the size of its row groups. Hive partition folders (`city=Paris/`)
add their values as text columns. Every batch says where its rows are, so an error can name the file
and the line (CSV) or the row (Parquet). Nothing here holds more than a few batches.
"""

from __future__ import annotations

import glob
import itertools
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from serve.model import MISSING

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}  # suffix → default delimiter
COMPRESSED = {".gz", ".bz2", ".zst", ".lz4"}  # a compressed CSV is read as it is (`data.csv.gz`)
PARQUET_SUFFIXES = {".parquet", ".pq"}
BLOCK_BYTES = 1 << 20  # CSV bytes per batch (~3,500 rows of 30 numbers); larger blocks cost read-ahead memory
PARQUET_BATCH_ROWS = 8192
PARQUET_BUFFER_BYTES = 1 << 16  # bytes read ahead per column: memory stays flat whatever the row groups
# Arrow matches null tokens exactly, so every capitalisation of the runtime's missing tokens is listed;
# a padded token (" NA ") fails the float parse and that column is then read as text (see `csv_chunks`).
NULL_TOKENS = sorted(
    {"".join(p) for token in MISSING for p in itertools.product(*({c.lower(), c.upper()} for c in token))}
)
CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


class TableError(Exception):
    """One line for the user about the input table."""


@dataclass
class Chunk:
    batch: pa.RecordBatch  # the wanted columns, named as the model and --keep name them
    path: Path
    first_row: int  # position of the batch's first row among its file's data rows (0-based)
    csv: bool

    def where(self, i: int) -> str:
        """Where row i of the batch is, as a person finds it: a CSV line (the header is line 1; exact
        while no quoted field spans lines) or a Parquet row (1-based)."""
        row = self.first_row + i
        return f"{self.path} line {row + 2}" if self.csv else f"{self.path} row {row + 1}"


def format_suffix(path: Path) -> str:
    """The suffix that says the format: `.csv` for data.csv and data.csv.gz."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[-1] in COMPRESSED and suffixes[0] in CSV_SUFFIXES:
        return suffixes[0]
    return suffixes[-1] if suffixes else ""


def table_format(path: Path) -> str | None:
    suffix = format_suffix(path)
    return "csv" if suffix in CSV_SUFFIXES else "parquet" if suffix in PARQUET_SUFFIXES else None


def resolve(data: str) -> tuple[str, list[Path], Path | None]:
    """(format, files in order, the directory when `data` is one: hive partitions are relative to it)."""
    path = Path(data)
    if path.is_dir():  # its table files; a .txt there is more likely a README than data
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and table_format(p) and format_suffix(p) != ".txt" and not hidden(p, path)
        )
        root = path
    elif path.exists():
        files, root = [path], None
    else:
        files, root = sorted(Path(p) for p in glob.glob(data, recursive=True) if Path(p).is_file()), None
        if not files:
            raise TableError(f"no such file, directory or glob match: {data}")
    formats = {table_format(p) for p in files}
    if None in formats:
        odd = next(p for p in files if table_format(p) is None)
        raise TableError(f"{odd}: not a table file (use .csv, .tsv, .txt or .parquet, optionally .gz)")
    if not files:
        raise TableError(f"{data}: no .csv or .parquet files in this directory")
    if len(formats) > 1:
        raise TableError(f"{data} mixes CSV and Parquet files; give one format")
    return formats.pop(), files, root


def hidden(path: Path, root: Path) -> bool:
    # Spark and Hadoop leave _SUCCESS and .crc files beside the data (pyarrow.dataset skips them too).
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def read_chunks(data: str, wanted: dict[str, str], delimiter: str | None = None) -> Iterator[Chunk]:
    """Batches of the `wanted` columns (name → "number" or "text") from every file of `data`."""
    kind, files, root = resolve(data)
    if kind == "parquet":
        yield from parquet_chunks(files, root, list(wanted))
        return
    for path in files:
        sep = delimiter or CSV_SUFFIXES[format_suffix(path)]
        yield from csv_chunks(path, wanted, sep, partitions(path, root))


def listing(names, limit: int = 12) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def partitions(path: Path, root: Path | None) -> dict[str, str]:
    """Hive partition values from the folders between `root` and the file (`city=Paris/part-0.csv`)."""
    if root is None:
        return {}
    return dict(part.split("=", 1) for part in path.relative_to(root).parts[:-1] if "=" in part)


def csv_chunks(path: Path, wanted: dict[str, str], delimiter: str, partition: dict) -> Iterator[Chunk]:
    parse = pacsv.ParseOptions(delimiter=delimiter)
    header = csv_header(path, parse)
    names = {name.strip(): name for name in header}  # the runtime matches stripped header names
    absent = [c for c in wanted if c not in names and c not in partition]
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
                batch = with_partitions(batch.slice(skip), read, partition)
                skip = 0
                yield Chunk(batch, path, done, csv=True)
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


def with_partitions(batch: pa.RecordBatch, read: list[str], partition: dict) -> pa.RecordBatch:
    arrays, names = list(batch.columns), list(read)
    for name, value in partition.items():
        if name not in read:
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


def parquet_chunks(files: list[Path], root: Path | None, columns: list[str]) -> Iterator[Chunk]:
    import pyarrow.parquet as pq  # here: a CSV run does not pay for importing it

    for path in files:
        partition = partitions(path, root)
        try:
            # Unbuffered reads decode a whole row group at once (a file written in one group is then read
            # whole); a buffered stream holds about `buffer_size` per column whatever the groups' size.
            source = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
            names = source.schema_arrow.names
            absent = [c for c in columns if c not in names and c not in partition]
            if absent:
                raise TableError(f"{path} lacks column(s) {', '.join(absent)} (it has: {listing(names)})")
            read = [c for c in columns if c in names]
            done = 0
            # Decoded on the read-ahead thread alone: Arrow's worker threads would each keep allocator
            # caches (measured: peak RSS 250 MB instead of 285 on the bench table), and Parquet decoding
            # is not what limits the rows/s.
            batches = source.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=read, use_threads=False)
            for batch in batches:
                yield Chunk(with_partitions(batch, read, partition), path, done, csv=False)
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
