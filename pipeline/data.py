"""Loading a table for training: columns and task (inferred where the config is silent), the feature
spec from training rows, and the train / validation / test splits, in memory or streamed.

The feature matrix stays *raw* (one float32 column per feature: numbers, NaN for missing, category codes);
standardization, imputation and one-hot encoding happen inside the model (`pipeline.models.Preprocess`).

Two ways through, one encoding (`pipeline.encoding`):
- in memory, when the encoded table fits the memory budget: the first pass caches the record batches,
  the splits are exact and stratified by class (seeded), as they always were;
- streamed otherwise (`pipeline.streaming`): a row's split is a seeded hash of its position, so no index of
  the table's size exists; pass one computes the statistics, later passes stream the rows again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.batches import read_ahead
from pipeline.config import RunConfig
from pipeline.distributed import SINGLE, Dist
from pipeline.encoding import (
    DROPPED,
    SPLIT_CODES,
    Columns,
    Feature,
    RawChunk,
    Statistics,
    category_codes,
    encode_target,
    features_from,
    prepare,
)
from pipeline.errors import PipelineError
from pipeline.inference import plan_columns, resolve_task, target_spec
from pipeline.memory import map_large_buffers, memory_budget, release_free_memory
from pipeline.sources import open_table
from pipeline.streaming import StreamingDataset, load_streamed

__all__ = ["SPLIT_CODES", "Dataset", "Feature", "StreamingDataset", "load_dataset"]
EVAL_ROWS = 65_536  # rows per evaluation chunk


@dataclass
class Dataset:
    """A table encoded in memory."""

    features: list[Feature]
    x: np.ndarray  # (n_rows, n_features) float32 raw features
    y: np.ndarray  # (n_rows,) int64 class index, or float64 target value
    class_names: list[str]  # classification: display name per class index
    target_names: list[str]  # regression: the target column(s)
    splits: dict[str, np.ndarray]  # "train" / "val" / "test" row indices (of this process's rows)
    dropped: int = 0  # rows dropped for a missing target
    task: str = ""
    rows: dict[str, int] = field(default_factory=dict)  # rows per split, all processes
    scale: tuple[float, float] = (0.0, 1.0)  # regression: training mean and std of the target
    train_first: int = 0  # this process's training rows are rows train_first.. of the job's
    train_total: int = 0  # training rows of the job (all processes, in rank order)
    streamed = False

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def target_scale(self) -> tuple[float, float]:
        return self.scale

    def chunks(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        index = self.splits[split]
        for start in range(0, len(index), EVAL_ROWS):
            rows = index[start : start + EVAL_ROWS]
            yield self.x[rows], self.y[rows]

    def held_out(self, n: int) -> np.ndarray:
        """Up to `n` test rows of this process."""
        return self.x[self.splits["test"][:n]].copy()


class OverBudget(Exception):
    """The cache outgrew the memory budget: stream instead."""


def split_rows(
    n: int, config: RunConfig, strata: np.ndarray | None, class_names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Seeded train / val / test split, stratified by class when `strata` is given."""
    rng = np.random.default_rng(config.seed)
    labels = [None] if strata is None else list(np.unique(strata))
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for label in labels:
        group = np.arange(n) if label is None else np.flatnonzero(strata == label)
        n_test = max(1, round(len(group) * config.test_fraction))
        n_val = max(1, round(len(group) * config.val_fraction))
        if len(group) - n_test - n_val < 1:
            what = "the table" if strata is None else f"class {class_names[label]!r} of {config.target!r}"
            raise PipelineError(
                f"{what} has {len(group)} row(s); a stratified train/validation/test split needs at least 3"
            )
        group = rng.permutation(group)
        parts["test"].append(group[:n_test])
        parts["val"].append(group[n_test : n_test + n_val])
        parts["train"].append(group[n_test + n_val :])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


def load_dataset(config: RunConfig, log=print, job: Dist = SINGLE) -> Dataset | StreamingDataset:
    """The table of `config`, in memory when its encoded form fits the memory budget, else streamed.
    With several processes (`job`), each reads its own shard; the statistics, the task and the splits
    are agreed on (gathered), so every process builds the same model."""
    table = open_table(config.data, config.delimiter)
    columns = plan_columns(table, config, log)
    budget = memory_budget(config.memory_budget)
    map_large_buffers()
    fits = table.estimated_rows() // job.world <= budget // row_bytes(columns)
    if job.world > 1:
        table = table.shard(job.rank, job.world, job.gather)
    try:
        if not fits:
            raise OverBudget()
        dataset = load_in_memory(table, columns, config, budget, log, job)
    except OverBudget:
        log(f"{table.describe()} is larger than the memory budget ({budget / 2**20:,.0f} MB): streaming it")
        dataset = load_streamed(table, columns, config, budget, log, job)
    release_free_memory()
    return dataset


def row_bytes(columns: Columns) -> int:
    """Bytes one cached row costs: its first-pass batch and its encoded row (a bound for text)."""
    return 4 * len(columns.numeric) + 24 * (len(columns.categorical) + 1) + 4 * len(columns.features) + 8


def load_in_memory(table, columns: Columns, config: RunConfig, budget: int, log, job: Dist) -> Dataset:
    raws, rows = [], 0
    limit = budget // row_bytes(columns)
    for chunk in read_ahead(table.chunks(columns.numeric, [*sorted(columns.categorical), columns.target])):
        raws.append(prepare(chunk, columns))  # parsing the next batch overlaps this
        rows += len(raws[-1])
        if rows > limit:
            break
    if any(job.gather(rows > limit)):
        raise OverBudget()
    empty = pa.array([], pa.string())
    values = pa.concat_arrays([raw.target for raw in raws]) if raws else empty
    target_stats = Statistics.empty(columns)
    target_stats.scan_target(values, train=None)
    target_stats = target_stats.agreed(job)
    if sum(job.gather(rows)) == 0:
        raise PipelineError(f"{table.describe()} has no data rows")
    task = resolve_task(config, target_stats, log)
    target, class_names = target_spec(config, task, target_stats)
    if target_stats.dropped:
        log(f"dropped {target_stats.dropped} row(s) with a missing {config.target!r}")
    kept = ~values.is_null().to_numpy(zero_copy_only=False)
    if sum(job.gather(int(kept.sum()))) == 0:
        raise PipelineError(f"target column {config.target!r} has no values")
    y = encode_target(values, target, config.target, locator(raws))[kept]
    # The splits are drawn over the whole job's rows (rank order is table order), as one process would.
    everyone = job.gather(y)
    first = sum(len(part) for part in everyone[: job.rank])
    y_all = np.concatenate(everyone)
    strata = y_all if target.classifier else None
    splits = split_rows(len(y_all), config, strata=strata, class_names=class_names)
    codes = np.empty(len(y_all), dtype=np.int8)
    for name, index in splits.items():
        codes[index] = SPLIT_CODES[name]
    split = np.full(rows, DROPPED, dtype=np.int8)
    split[kept] = codes[first : first + len(y)]
    scale = (0.0, 1.0)
    if not target.classifier:
        train_y = y_all[splits["train"]].astype(np.float64)
        scale = (float(train_y.mean()), float(train_y.std()) or 1.0)
    train_before = int((codes[:first] == SPLIT_CODES["train"]).sum())
    del everyone, y_all
    # The feature matrix is filled batch by batch; its statistics are taken over fixed blocks of it, so
    # they do not depend on how the reading was cut (a CSV and a Parquet file give the same model).
    numeric = [j for j, name in enumerate(columns.features) if name not in columns.categorical]
    x = np.empty((rows, len(columns.features)), dtype=np.float32)
    start = 0
    for raw in raws:
        x[start : start + len(raw), numeric] = raw.numbers
        start += len(raw)
    categories = {
        name: pa.concat_arrays([raw.categories[name] for raw in raws]) if raws else empty
        for name in columns.categorical
    }
    del raws
    stats = Statistics.empty(columns)
    stats.scan(x, categories, split, numeric_columns=numeric)
    features = features_from(stats.agreed(job), columns, config.max_categories, log)
    for j, feature in enumerate(features):
        if feature.kind == "categorical":
            x[:, j] = category_codes(categories[feature.name], feature)
    if not kept.all():
        x = x[kept]
    local = {name: np.flatnonzero(split[kept] == code) for name, code in SPLIT_CODES.items()}
    target_names = [] if target.classifier else [config.target]
    totals = {name: len(index) for name, index in splits.items()}
    return Dataset(
        features,
        x,
        y,
        class_names,
        target_names,
        local,
        target_stats.dropped,
        task,
        totals,
        scale,
        train_first=train_before,
        train_total=totals["train"],
    )


def locator(raws: list[RawChunk]):
    """`locate` over several batches, as if they were one."""
    starts = np.cumsum([0] + [len(r) for r in raws])
    locates = [r.locate for r in raws]

    def locate(i: int) -> str:
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return locates[k](i - int(starts[k]))

    return locate
