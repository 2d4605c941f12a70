"""A training table encoded in memory: the first pass caches the record batches, the train / validation
/ test split is exact and stratified by class (seeded), and the feature matrix stays *raw* (one float32
column per feature: numbers, NaN for missing, category codes); standardization, imputation and one-hot
encoding happen inside the model (`pipeline.training.models.Preprocess`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.config import RunConfig
from pipeline.data.base import SplitTable
from pipeline.data.encoding import (
    DROPPED,
    SPLIT_CODES,
    Columns,
    Moments,
    RawChunk,
    Statistics,
    category_codes,
    encode_target,
    features_from,
    prepare,
)
from pipeline.data.job import Job
from pipeline.data.readahead import read_ahead
from pipeline.data.schema import settle_target, target_scale
from pipeline.errors import PipelineError

EVAL_ROWS = 65_536  # rows per evaluation chunk


@dataclass(kw_only=True)
class Dataset(SplitTable):
    """A table encoded in memory."""

    x: np.ndarray  # (n_rows, n_features) float32 raw features
    y: np.ndarray  # (n_rows,) int64 class index, or float64 target value
    splits: dict[str, np.ndarray]  # "train" / "val" / "test" row indices (of this process's rows)
    train_first: int = 0  # this process's training rows are rows train_first.. of the job's
    train_total: int = 0  # training rows of the job (all processes, in rank order)

    def chunks(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        index = self.splits[split]
        for start in range(0, len(index), EVAL_ROWS):
            rows = index[start : start + EVAL_ROWS]
            yield self.x[rows], self.y[rows]

    def held_out(self, n: int) -> np.ndarray:
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


def row_bytes(columns: Columns) -> int:
    """Bytes one cached row costs: its first-pass batch and its encoded row (a bound for text)."""
    return 4 * len(columns.numeric) + 24 * (len(columns.categorical) + 1) + 4 * len(columns.features) + 8


def load_in_memory(table, columns: Columns, config: RunConfig, budget: int, log, job: Job) -> Dataset:
    raws, rows = [], 0
    limit = budget // row_bytes(columns)
    for chunk in read_ahead(columns.chunks(table)):
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
    plan = settle_target(target_stats, config, log)
    kept = ~values.is_null().to_numpy(zero_copy_only=False)
    y = encode_target(values, plan.spec, config.target, locator(raws))[kept]
    # The splits are drawn over the whole job's rows (rank order is table order), as one process would.
    everyone = job.gather(y)
    first = sum(len(part) for part in everyone[: job.rank])
    y_all = np.concatenate(everyone)
    strata = y_all if plan.classifier else None
    splits = split_rows(len(y_all), config, strata=strata, class_names=plan.class_names)
    codes = np.empty(len(y_all), dtype=np.int8)
    for name, index in splits.items():
        codes[index] = SPLIT_CODES[name]
    split = np.full(rows, DROPPED, dtype=np.int8)
    split[kept] = codes[first : first + len(y)]
    moments = Moments.empty(1) if plan.classifier else Moments.of(y_all[splits["train"]].reshape(-1, 1))
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
    totals = {name: len(index) for name, index in splits.items()}
    return Dataset(
        features=features,
        plan=plan,
        rows=totals,
        scale=target_scale(plan, moments),
        files=list(table.files),
        x=x,
        y=y,
        splits=local,
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
