"""Loading a table for training: columns and task (inferred where the config is silent), the feature
spec from training rows, and the train / validation / test splits, in memory or streamed.

The feature matrix stays *raw* (one float32 column per feature: numbers, NaN for missing, category codes);
standardization, imputation and one-hot encoding happen inside the model (`pipeline.models.Preprocess`).

Two ways through, one encoding (`pipeline.encoding`):
- in memory, when the encoded table fits the memory budget: the first pass caches the record batches,
  the splits are exact and stratified by class (seeded), as they always were;
- streamed otherwise: a row's split is a seeded hash of its position in the table, so no index array of
  the table's size exists; pass one computes the statistics, later passes stream the rows again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

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
    TargetSpec,
    category_codes,
    encode,
    encode_target,
    features_from,
    is_number,
    prepare,
)
from pipeline.errors import PipelineError
from pipeline.memory import map_large_buffers, memory_budget, release_free_memory
from pipeline.sources import open_table
from pipeline.tasks import TASKS

__all__ = ["SPLIT_CODES", "Dataset", "Feature", "StreamingDataset", "load_dataset"]
MAX_INFERRED_CLASSES = 20  # a numeric target with at most this many distinct integers is multiclass
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


@dataclass
class StreamingDataset:
    """A table too large for the memory budget: every pass reads it again, through the same encoding."""

    table: object
    columns: Columns
    features: list[Feature]
    target: TargetSpec
    class_names: list[str]
    target_names: list[str]
    rows: dict[str, int]  # rows per split, all processes
    dropped: int
    task: str
    seed: int
    fractions: tuple[float, float]  # (validation, test)
    scale: tuple[float, float] = (0.0, 1.0)
    local_train: list[int] = field(default_factory=list)  # training rows of each process
    cached: dict[str, list] = field(default_factory=dict)  # small splits kept after their first pass
    cache_rows: int = 0  # a split with at most this many rows is kept in memory
    streamed = True

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def target_scale(self) -> tuple[float, float]:
        return self.scale

    def raw_chunks(self) -> Iterator[tuple[RawChunk, np.ndarray]]:
        names = self.columns
        for chunk in self.table.chunks(names.numeric, [*sorted(names.categorical), names.target]):
            raw = prepare(chunk, names)
            yield raw, streamed_split(raw, self.seed, self.fractions)

    def chunks(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) of the rows of `split`, in table order."""
        if split in self.cached:
            yield from self.cached[split]
            return
        keep = self.rows[split] <= self.cache_rows
        kept = []
        code = SPLIT_CODES[split]
        for raw, splits in self.raw_chunks():
            rows = splits == code
            if rows.any():
                x, y = encode(raw, self.features, self.target)
                part = (x[rows], y[rows])
                if keep:
                    kept.append(part)
                yield part
        if keep:
            self.cached[split] = kept

    def held_out(self, n: int) -> np.ndarray:
        parts, total = [], 0
        for x, _ in self.chunks("test"):
            parts.append(x[: n - total])
            total += len(parts[-1])
            if total >= n:
                break
        return np.concatenate(parts) if parts else np.empty((0, len(self.features)), np.float32)


def position_split(positions: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Split codes from a seeded hash (splitmix64) of each row's position in the table."""
    z = positions.astype(np.uint64) + np.uint64(seed + 1) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / 2.0**53  # uniform in [0, 1)
    split = np.full(len(u), SPLIT_CODES["train"], dtype=np.int8)
    split[u < test_fraction + val_fraction] = SPLIT_CODES["val"]
    split[u < test_fraction] = SPLIT_CODES["test"]
    return split


def streamed_split(raw: RawChunk, seed: int, fractions: tuple[float, float]) -> np.ndarray:
    """A streamed batch's split codes: by position, DROPPED where the target is missing."""
    split = position_split(raw.positions, seed, *fractions)
    split[np.asarray(raw.target.is_null())] = DROPPED
    return split


class OverBudget(Exception):
    """The cache outgrew the memory budget: stream instead."""


def plan_columns(table, config: RunConfig, log) -> Columns:
    for role, names in (
        ("target", [config.target]),
        ("categorical", config.categorical),
        ("ignored", config.ignore),
    ):
        absent = [n for n in names if n not in table.columns]
        if absent:
            raise PipelineError(
                f"{role} column(s) {', '.join(map(repr, absent))} not in {table.describe()} "
                f"(columns: {', '.join(table.columns)})"
            )
    features = [c for c in table.columns if c != config.target and c not in config.ignore]
    if not features:
        raise PipelineError(f"{table.describe()}: no feature columns left after the target and ignored ones")
    summaries = table.summarize()
    categorical = set(config.categorical)
    for name in features:
        if name not in categorical and not summaries[name].is_numeric:
            categorical.add(name)
            log(f"inferred: column {name!r} is text, so categorical (leave it out with --ignore {name})")
    return Columns(config.target, features, categorical)


def resolve_task(config: RunConfig, stats: Statistics, log) -> str:
    """The configured task, or the one the target's values imply (printed with the reason)."""
    if config.task:
        return config.task
    classes = list(stats.classes)
    if stats.many_classes and not stats.target_numeric:
        raise PipelineError(f"target {config.target!r} has over 10,000 distinct text values; set --task")
    if len(classes) == 2 and not stats.many_classes:
        task, why = "binary", f"2 distinct values ({', '.join(sorted(classes, key=class_order(classes)))})"
    elif not stats.target_numeric:
        task, why = "multiclass", f"{len(classes)} distinct values, some of them text"
    elif (
        not stats.many_classes
        and len(classes) <= MAX_INFERRED_CLASSES
        and all(float(c).is_integer() for c in classes)
    ):
        task, why = "multiclass", f"{len(classes)} distinct whole numbers (at most {MAX_INFERRED_CLASSES})"
    else:
        task, why = "regression", "numbers with more than a few distinct values"
    log(f"inferred: task {task}, because target {config.target!r} has {why} (override with --task)")
    return task


def class_order(values):
    """Numeric order for numeric-looking class values (so '10' follows '9'), text order otherwise."""
    return (lambda v: float(v)) if all(is_number(v) for v in values) else str


def target_spec(config: RunConfig, task: str, stats: Statistics) -> tuple[TargetSpec, list[str]]:
    """How the target is encoded, and the class display names."""
    if not TASKS[task].is_classifier:
        if not stats.target_numeric:
            return TargetSpec(False), []  # encode_target names the first non-number
        return TargetSpec(False), []
    if stats.many_classes:
        raise PipelineError(f"target {config.target!r} has over 10,000 distinct values for a classifier")
    classes = sorted(stats.classes, key=class_order(list(stats.classes)))
    if not classes:
        raise PipelineError(f"target column {config.target!r} has no values")
    if task == "binary" and config.positive:
        if config.positive not in classes:
            raise PipelineError(
                f"positive value {config.positive!r} never occurs in target {config.target!r} "
                f"(values: {', '.join(classes[:10])})"
            )
        spec, counts = (
            TargetSpec(True, classes, config.positive),
            [
                sum(n for c, n in stats.classes.items() if c != config.positive),
                stats.classes[config.positive],
            ],
        )
        classes = [f"not {config.positive}", config.positive]
    else:
        if task == "binary" and len(classes) > 2:
            raise PipelineError(
                f"binary target {config.target!r} has {len(classes)} values; "
                f"set `positive` to the value of the positive class"
            )
        spec, counts = TargetSpec(True, classes), [stats.classes[c] for c in classes]
    if sum(1 for n in counts if n) < 2:
        only = classes[int(np.argmax(counts))]
        raise PipelineError(
            f"target {config.target!r} has only one class ({only!r}); a classifier needs at least two"
        )
    return spec, class_display_names(classes, config)


def class_display_names(classes: list[str], config: RunConfig) -> list[str]:
    if config.class_names:
        if len(config.class_names) != len(classes):
            raise PipelineError(
                f"class_names has {len(config.class_names)} names for {len(classes)} classes ({classes})"
            )
        return list(config.class_names)
    if config.class_names_csv:
        try:
            table = pa_csv.read_csv(
                config.class_names_csv,
                convert_options=pa_csv.ConvertOptions(column_types={}, strings_can_be_null=False),
                read_options=pa_csv.ReadOptions(use_threads=False),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise PipelineError(f"{config.class_names_csv}: not a readable class-name CSV ({exc})") from None
        lookup = {str(k): str(v) for k, v in zip(*(c.to_pylist() for c in table.columns[:2]))}
        if config.task == "binary" and config.positive:
            positive = lookup.get(config.positive, config.positive)
            return [f"not {positive}", positive]
        return [lookup.get(c, c) for c in classes]
    return classes


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


def agreed(job: Dist, stats: Statistics) -> Statistics:
    """Every process's statistics merged (the same on every process)."""
    parts = job.gather(stats)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return merged


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
    target_stats = agreed(job, target_stats)
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
    features = features_from(agreed(job, stats), columns, config.max_categories, log)
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


def load_streamed(
    table, columns: Columns, config: RunConfig, budget: int, log, job: Dist
) -> StreamingDataset:
    stats = Statistics.empty(columns)
    fractions = (config.val_fraction, config.test_fraction)
    for chunk in read_ahead(table.chunks(columns.numeric, [*sorted(columns.categorical), columns.target])):
        raw = prepare(chunk, columns)
        split = streamed_split(raw, config.seed, fractions)
        stats.scan(raw.numbers, raw.categories, split)
        stats.scan_target(raw.target, train=split == SPLIT_CODES["train"])
    local_train = job.gather(stats.rows["train"])
    stats = agreed(job, stats)
    task = resolve_task(config, stats, log)
    target, class_names = target_spec(config, task, stats)
    if stats.dropped:
        log(f"dropped {stats.dropped} row(s) with a missing {config.target!r}")
    for name, count in stats.rows.items():
        if count == 0:
            raise PipelineError(f"the {name} split of {table.describe()} is empty; the table is too small")
    features = features_from(stats, columns, config.max_categories, log)
    scale = (0.0, 1.0)
    if not target.classifier:
        scale = (float(stats.target.mean[0]), float(stats.target.std()[0]) or 1.0)
    return StreamingDataset(
        table,
        columns,
        features,
        target,
        class_names,
        [] if target.classifier else [config.target],
        dict(stats.rows),
        stats.dropped,
        task,
        config.seed,
        fractions,
        scale,
        local_train,
        cache_rows=budget // 4 // (4 * len(features) + 8),
    )
