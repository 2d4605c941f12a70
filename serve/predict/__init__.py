"""Batch prediction with an exported model: a table in, one prediction per row out, onnxruntime only.

The input is CSV or Parquet (a file, a directory with hive partitions, or a glob; `serve.predict.tables`);
the output is CSV or Parquet by its extension, or CSV on standard output. Rows stream through in record
batches, read → encode (`serve.predict.encoding`) → one onnxruntime call → write, so memory stays bounded
whatever the row count. The output holds the --keep columns first, then `label` and one `p_<class>` column
per class (classifiers) or `predicted_<target>` (regression). A file is written beside its destination and
renamed into place only when every row succeeded, so a failed run leaves a previous output as it was. The
rows follow the runtime's input rule (serve/model.py): columns that are not features are ignored and a
feature without a column is missing, both said once on `notice` when the run succeeds. This module needs
pyarrow (the `batch` extra); the HTTP server never imports it.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from serve.errors import ModelLoadError
from serve.model import Model
from serve.predict.encoding import BatchEncoder, CellError
from serve.predict.tables import TableError, listing, read_ahead, read_chunks

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ROW_GROUP_ROWS = 65536  # Parquet output: batches are gathered into row groups of about this many rows


class PredictError(Exception):
    """One line for the user."""


def predict_table(
    model_dir: Path,
    data: str | Path,
    out: Path | None = None,
    keep: list[str] = (),
    delimiter: str | None = None,
    threads: int | None = None,
    notice=lambda line: print(line, file=sys.stderr),
) -> int:
    """Write a prediction for every row of `data` to `out` (CSV on stdout when None); returns the row
    count. Raises PredictError with one line naming the file, the line or row, and the column."""
    out = Path(out) if out else None
    if out is not None and out.suffix.lower() not in OUTPUT_FORMATS:
        raise PredictError(f"{out}: the output must end in .csv or .parquet")
    if out is not None and not out.parent.is_dir():
        raise PredictError(f"cannot write {out}: no directory {out.parent}")
    try:
        model = Model.load(model_dir, threads=threads or default_threads())
    except ModelLoadError as exc:
        raise PredictError(f"cannot load {model_dir}: {exc}") from None
    keep = list(keep)
    clash = [c for c in keep if c in result_columns(model)]
    if clash:
        raise PredictError(f"--keep {', '.join(clash)}: the output has a column of that name already")
    # Numeric features are parsed as numbers while reading; everything else arrives as text.
    wanted = {c: "text" for c in keep}
    wanted.update({f["name"]: "number" if f["kind"] == "numeric" else "text" for f in model.features})
    encoder, output, count, said = BatchEncoder(model), Output(out), 0, {}  # notice → its first file
    feature_names = frozenset(f["name"] for f in model.features)
    try:
        for chunk in read_ahead(read_chunks(str(data), wanted, delimiter, optional=feature_names)):
            for line in column_notices(model, keep, chunk.file_columns):
                said.setdefault(line, f"{chunk.path}: {line}")
            try:
                features = encoder.encode(chunk.batch)
            except CellError as exc:
                where = chunk.path if exc.row is None else chunk.where(exc.row)
                raise PredictError(f"{where}: {exc}") from None
            outputs = model.run(features)
            arrays = [chunk.batch.column(c) for c in keep] + result_arrays(model, outputs)
            output.write(pa.RecordBatch.from_arrays(arrays, names=keep + result_columns(model)))
            count += chunk.batch.num_rows
        if count == 0:
            output.write(empty_batch(model, keep))
        output.commit()
        for line in said.values():  # after the run: a failed one says one line, its error
            notice(line)
    except TableError as exc:
        raise PredictError(str(exc)) from None
    finally:
        output.discard()
    return count


def column_notices(model: Model, keep: list[str], columns: tuple[str, ...]) -> list[str]:
    """What the input rule does with a file's columns, in words (nothing when they are the features)."""
    features = [f["name"] for f in model.features]
    ignored = [c for c in columns if c not in model.feature_index and c not in keep]
    absent = [f for f in features if f not in columns]
    lines = [f"ignoring column(s) that are not features of the model: {listing(ignored)}"] if ignored else []
    if absent:
        lines.append(f"no column(s) {listing(absent)}: predicted with those features missing")
    return lines


def default_threads() -> int:
    """onnxruntime intra-op threads: the cores left once one parses the input, at most 4 (a batch of a
    few thousand rows splits no further usefully). On 2 cores that is 1: measured, a second onnxruntime
    thread spinning beside the parser halves the rows/s."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores - 1))


def result_columns(model: Model) -> list[str]:
    if "prediction" in model.outputs:
        return [f"predicted_{name}" for name in model.manifest["target_names"]]
    return ["label", *(f"p_{name}" for name in model.manifest["class_names"])]


def result_arrays(model: Model, outputs: dict[str, np.ndarray]) -> list[pa.Array]:
    """The model's outputs as Arrow columns: float32 as computed, class names as a dictionary column."""
    if "prediction" in outputs:
        prediction = outputs["prediction"]  # (rows, targets)
        return [pa.array(np.ascontiguousarray(prediction[:, t])) for t in range(prediction.shape[1])]
    probabilities = outputs["probabilities"]  # (rows, classes), or (rows, 1) for binary: p(positive)
    if probabilities.shape[1] == 1:
        columns = [1 - probabilities[:, 0], probabilities[:, 0]]
    else:
        columns = [np.ascontiguousarray(probabilities[:, k]) for k in range(probabilities.shape[1])]
    classes = pa.array(model.manifest["class_names"], pa.string())
    label = pa.DictionaryArray.from_arrays(pa.array(outputs["label"].astype(np.int32)), classes)
    return [label, *(pa.array(column) for column in columns)]


def empty_batch(model: Model, keep: list[str]) -> pa.RecordBatch:
    """The output's columns with no rows (a table with a header and no data)."""
    if "prediction" in model.outputs:
        outputs = {"prediction": np.empty((0, len(model.manifest["target_names"])), np.float32)}
    else:
        width = model.outputs["probabilities"]["shape"][1]  # 1 for binary
        outputs = {"probabilities": np.empty((0, width), np.float32), "label": np.empty(0, np.int64)}
    arrays = [pa.array([], pa.string()) for _ in keep] + result_arrays(model, outputs)
    return pa.RecordBatch.from_arrays(arrays, names=keep + result_columns(model))


class Output:
    """Predictions to CSV or Parquet, in batches; a file is written aside and renamed by `commit`."""

    def __init__(self, path: Path | None):
        self.path = path
        self.format = OUTPUT_FORMATS[path.suffix.lower()] if path else "csv"
        self.temp = path.with_name(f".{path.name}.{os.getpid()}.partial") if path else None
        self.sink = self.writer = None  # CSV: the byte stream; Parquet: the ParquetWriter
        self.pending: list[pa.RecordBatch] = []  # Parquet: batches not yet in a row group

    def open(self, schema: pa.Schema) -> None:
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq  # here: a CSV run does not pay for importing it

                self.writer = pq.ParquetWriter(str(self.temp), schema)
                return
            self.sink = pa.OSFile(str(self.temp), "wb") if self.temp else pa.PythonFile(sys.stdout.buffer)
        except OSError as exc:
            raise PredictError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(schema.names)  # quoted only where needed
        self.sink.write(header.getvalue().encode())

    def write(self, batch: pa.RecordBatch) -> None:
        if self.sink is None and self.writer is None:
            self.schema = batch.schema
            self.open(batch.schema)
        elif batch.schema != self.schema:  # a kept column typed differently in a later file
            try:
                batch = batch.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise PredictError(f"--keep columns change type between files: {exc}") from None
        if self.format == "csv":
            # Arrow's "needed" style quotes every text cell; plain "none" is chosen when nothing needs it.
            style = "needed" if needs_quotes(batch) else "none"
            options = pacsv.WriteOptions(include_header=False, quoting_style=style)
            pacsv.write_csv(batch, self.sink, options)
            return
        self.pending.append(batch)
        if sum(b.num_rows for b in self.pending) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending), row_group_size=1 << 30)
            self.pending = []

    def commit(self) -> None:
        if self.format == "parquet":
            self.flush()
            self.writer.close()
        elif self.temp is not None:
            self.sink.close()
        else:
            sys.stdout.buffer.flush()
        if self.temp is not None:
            os.replace(self.temp, self.path)
            self.temp = None

    def discard(self) -> None:
        """After a failure: close what is open and remove the partial file (a no-op after commit)."""
        if self.temp is None:
            return
        for handle in (self.writer, self.sink):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # closing a half-written file; the file is removed next
                pass
        self.temp.unlink(missing_ok=True)


def needs_quotes(batch: pa.RecordBatch) -> bool:
    for column in batch.columns:
        values = column.dictionary if pa.types.is_dictionary(column.type) else column
        text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
        if text and pc.any(pc.match_substring_regex(values, r'[,"\r\n]')).as_py():
            return True
    return False
