"""Batch prediction from a CSV with an exported model: onnxruntime only, streamed in chunks.

Columns are matched to the model's features by name (extra columns are ignored; a missing feature column
is an error); each chunk of rows is encoded, run and written before the next is read, so a file larger
than memory works. Classifiers write the label and one probability column per class; regression writes
the predicted value per target.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from serve.errors import BadRequest, ModelLoadError
from serve.model import Model

CHUNK_ROWS = 4096


class PredictError(Exception):
    """One line for the user."""


def chunks(reader, size: int) -> Iterator[list[list[str]]]:
    chunk = []
    for row in reader:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_csv(
    model_dir: Path, csv_in: Path, csv_out: Path | None, keep: list[str] = (), chunk_rows: int = CHUNK_ROWS
) -> int:
    """Write predictions for every row of `csv_in` to `csv_out` (stdout when None); returns the row count."""
    model_dir, csv_in = Path(model_dir), Path(csv_in)
    try:
        model = Model(model_dir).load()
    except ModelLoadError as exc:
        raise PredictError(f"cannot load {model_dir}: {exc}") from None
    try:
        source = csv_in.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise PredictError(f"cannot read {csv_in}: {exc.strerror}") from None
    with source:
        reader = csv.reader(source)
        header = [c.strip() for c in next(reader, [])]
        missing = [f["name"] for f in model.features if f["name"] not in header]
        absent_keep = [c for c in keep if c not in header]
        if missing or absent_keep:
            raise PredictError(f"{csv_in} lacks column(s) {', '.join(missing + absent_keep)}")
        columns = [header.index(f["name"]) for f in model.features]
        kept = [header.index(c) for c in keep]
        target = open(csv_out, "w", newline="") if csv_out else sys.stdout  # noqa: SIM115
        try:
            writer = csv.writer(target)
            writer.writerow([*keep, *result_columns(model)])
            count = 0
            for chunk in chunks(reader, chunk_rows):
                try:
                    rows = [[row[j] for j in columns] for row in chunk]
                    features = model.check_features(model.encode_rows(rows))
                except (IndexError, BadRequest) as exc:
                    raise PredictError(f"{csv_in} near data row {count + 1}: {describe(exc)}") from None
                for row, result in zip(chunk, model.describe(model.run(features))):
                    writer.writerow([*(row[j] for j in kept), *result_values(result)])
                count += len(chunk)
        finally:
            if csv_out:
                target.close()
    return count


def describe(exc: Exception) -> str:
    return exc.message if isinstance(exc, BadRequest) else "a row has fewer fields than the header"


def result_columns(model: Model) -> list[str]:
    if "prediction" in model.outputs:
        return [f"predicted_{name}" for name in model.manifest["target_names"]]
    return ["label", *(f"p_{name}" for name in model.manifest["class_names"])]


def result_values(result: dict) -> list:
    if "label" in result:
        return [result["label"], *(f"{p:.6g}" for p in result["probabilities"].values())]
    return [f"{v:.6g}" for v in result.values()]
