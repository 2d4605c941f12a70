"""The one encoding code path: record batches → raw feature matrices and targets, and the statistics
that define the features (from training rows only).

Every row goes the same way whether the table is cached in memory or streamed: `prepare` turns a record
batch into a `RawChunk` (numbers as float32 with NaN for missing, categories and target still text),
`Statistics.scan` accumulates training-row statistics (means and variances in float64, category and
class counts, missing counts) mergeable across batches and processes, `features_from` turns them into the
feature spec, `encode_rows` gives the float32 matrix the model takes (category codes) and
`encode_target` the targets.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contract.features import VALUE_KINDS, Feature
from pipeline.data.cells import NUMBER, Chunk
from pipeline.errors import PipelineError

MAX_TEXT_CLASSES = 10_000  # a text target with more distinct values is not a classification target
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
BLOCK_ROWS = 1 << 16  # rows per block of statistics (and of the in-memory encoding)
DROPPED = 3  # split code of a row without a target value


@dataclass
class Columns:
    """Which columns are read how: the target, and the features in table order: categorical ones as
    text, the others as float values (numbers, dates as seconds since the epoch, booleans as 0/1)."""

    target: str
    features: list[str]  # feature columns in input order
    categorical: set[str]  # the features one-hot encoded (read as text)
    dates: set[str] = field(default_factory=set)  # date features (ISO text, Parquet dates / timestamps)
    booleans: set[str] = field(default_factory=set)  # true/false, yes/no features

    @property
    def numeric(self) -> list[str]:
        """The features read as float values (the columns of `RawChunk.numbers`), in input order."""
        return [c for c in self.features if c not in self.categorical]

    def kind(self, name: str) -> str:
        if name in self.categorical:
            return "categorical"
        return "date" if name in self.dates else "boolean" if name in self.booleans else "numeric"

    def chunks(self, table):
        """The table's record batches, each column read as its kind says."""
        numbers = [c for c in self.numeric if self.kind(c) == "numeric"]
        text = [*sorted(self.categorical), self.target]
        return table.chunks(numbers, text, sorted(self.dates), sorted(self.booleans))


@dataclass(kw_only=True)
class RawChunk:
    """A batch of rows on its way to the model: numbers parsed, categories and target still text."""

    numbers: np.ndarray  # (rows, n_numeric) float32, NaN for missing
    categories: dict[str, pa.Array]  # categorical column → cleaned strings (null for missing)
    target: pa.Array  # cleaned strings, null for missing
    positions: np.ndarray  # (rows,) int64 position of each row in the table
    locate: Callable[[int], str]
    target_name: str

    def __len__(self) -> int:
        return len(self.positions)


def prepare(chunk: Chunk, columns: Columns) -> RawChunk:
    numeric = columns.numeric
    numbers = np.empty((len(numeric), chunk.rows), dtype=np.float32).T  # column-major: cheap column writes
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
        for j, name in enumerate(numeric):
            numbers[:, j] = chunk.columns[name].to_numpy(zero_copy_only=False)
    infinite = np.isinf(numbers)
    if infinite.any():
        i, j = (int(v[0]) for v in np.nonzero(infinite))
        value = chunk.columns[numeric[j]][i].as_py()
        if math.isinf(value):
            raise PipelineError(
                f"column {numeric[j]!r} {chunk.locate(i)}: '{value:g}' is not a finite number"
            )
        raise PipelineError(f"column {numeric[j]!r} {chunk.locate(i)}: {value:g} is beyond the float32 range")
    categories = {name: chunk.columns[name] for name in columns.categorical}
    positions = np.arange(chunk.start, chunk.start + chunk.rows, dtype=np.int64)
    target = chunk.columns[columns.target]
    return RawChunk(
        numbers=numbers,
        categories=categories,
        target=target,
        positions=positions,
        locate=chunk.locate,
        target_name=columns.target,
    )


def counts_of(values: pa.Array) -> Counter:
    """Value → count of the non-missing values."""
    counted = pc.value_counts(values.drop_null())
    return Counter(dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist())))


@dataclass(kw_only=True)
class Moments:
    """Count, mean and sum of squared deviations per column, merged exactly (Chan et al.)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Moments:
        return cls(count=np.zeros(n), mean=np.zeros(n), m2=np.zeros(n))

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """Moments of the non-NaN values of each column of `values` (rows, n), in float64, two passes
        per block of rows (so no cancellation, and bounded temporaries)."""
        total = cls.empty(values.shape[1])
        for start in range(0, len(values), BLOCK_ROWS):
            block = values[start : start + BLOCK_ROWS].astype(np.float64)
            missing = np.isnan(block)
            block[missing] = 0.0
            count = len(block) - missing.sum(0).astype(np.float64)
            mean = np.divide(block.sum(0), count, out=np.zeros(len(count)), where=count > 0)
            block -= mean
            block[missing] = 0.0
            np.square(block, out=block)
            total.merge(cls(count=count, mean=mean, m2=block.sum(0)))
        return total

    def merge(self, other: Moments) -> None:
        count = self.count + other.count
        delta = other.mean - self.mean
        safe = np.where(count > 0, count, 1)
        self.mean = self.mean + delta * other.count / safe
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / safe
        self.count = count

    def std(self) -> np.ndarray:
        return np.sqrt(np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0))


@dataclass(kw_only=True)
class Statistics:
    """Everything the feature spec and the task come from, accumulated batch by batch."""

    numeric: Moments  # training rows, per numeric feature
    numeric_seen: np.ndarray  # non-missing values per numeric feature, all rows
    categories: dict[str, Counter]  # categorical feature → training-row value counts
    categories_seen: dict[str, int]  # categorical feature → non-missing values, all rows
    numeric_missing: np.ndarray  # missing values per numeric feature, training rows
    categories_missing: dict[str, int]  # categorical feature → missing values, training rows
    classes: Counter  # target value → count over all rows with a target (capped, see `many_classes`)
    many_classes: bool = False
    target: Moments = field(default_factory=lambda: Moments.empty(1))  # numeric target, training rows
    target_numeric: bool = True  # every target value is a number
    dropped: int = 0  # rows without a target
    rows: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})

    @classmethod
    def empty(cls, columns: Columns) -> Statistics:
        n = len(columns.numeric)
        categorical = [c for c in columns.features if c in columns.categorical]
        return cls(
            numeric=Moments.empty(n),
            numeric_seen=np.zeros(n, dtype=np.int64),
            categories={c: Counter() for c in categorical},
            categories_seen=dict.fromkeys(categorical, 0),
            numeric_missing=np.zeros(n, dtype=np.int64),
            categories_missing=dict.fromkeys(categorical, 0),
            classes=Counter(),
        )

    def scan(
        self, numbers: np.ndarray, categories: dict[str, pa.Array], split: np.ndarray, numeric_columns=None
    ) -> None:
        """Add a batch of rows: `numbers` (rows, n) or, with `numeric_columns`, those columns of it;
        `categories` their text; `split` each row's split code (or DROPPED)."""
        train = split == SPLIT_CODES["train"]
        for name, code in SPLIT_CODES.items():
            self.rows[name] += int((split == code).sum())
        for start in range(0, len(numbers), BLOCK_ROWS):
            block = numbers[start : start + BLOCK_ROWS]
            if numeric_columns is not None:
                block = block[:, numeric_columns]
            rows = train[start : start + BLOCK_ROWS]
            missing = np.isnan(block)
            self.numeric_seen += len(block) - missing.sum(0)
            self.numeric_missing += missing[rows].sum(0)
            self.numeric.merge(Moments.of(block[rows]))
        mask = pa.array(train)
        for name, values in categories.items():
            in_train = values.filter(mask)
            self.categories[name].update(counts_of(in_train))
            self.categories_seen[name] += len(values) - values.null_count
            self.categories_missing[name] += in_train.null_count

    def scan_target(self, target: pa.Array, train: np.ndarray | None) -> None:
        """Class counts and whether every value is a number (all rows with a target); the numeric
        target's moments over the `train` rows (none when `train` is None)."""
        self.dropped += target.null_count
        if not self.many_classes:
            self.classes.update(counts_of(target))
            if len(self.classes) > MAX_TEXT_CLASSES:
                self.many_classes = True
                self.classes = Counter()
        present = target.drop_null()
        if self.target_numeric and len(present):
            numbers = pc.match_substring_regex(pc.utf8_lower(present), NUMBER)
            self.target_numeric = pc.all(numbers).as_py()
        if self.target_numeric and train is not None:
            values = pc.cast(target.filter(pa.array(train)).drop_null(), pa.float64()).to_numpy(False)
            self.target.merge(Moments.of(values.reshape(-1, 1)))

    def agreed(self, job) -> Statistics:
        """Every process's statistics merged, the same on every process (`job`: pipeline.distributed)."""
        parts = job.gather(self)
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        return merged

    def merge(self, other: Statistics) -> None:
        """Fold in another process's (or batch range's) statistics."""
        self.numeric.merge(other.numeric)
        self.numeric_seen += other.numeric_seen
        for name, counts in other.categories.items():
            self.categories[name].update(counts)
            self.categories_seen[name] += other.categories_seen[name]
        self.numeric_missing += other.numeric_missing
        for name, count in other.categories_missing.items():
            self.categories_missing[name] += count
        self.many_classes = self.many_classes or other.many_classes
        self.classes = Counter() if self.many_classes else self.classes + other.classes
        self.target.merge(other.target)
        self.target_numeric = self.target_numeric and other.target_numeric
        self.dropped += other.dropped
        for name, count in other.rows.items():
            self.rows[name] += count


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text)) or text.strip().lower() in ("inf", "-inf", "nan")
    except ValueError:
        return False


def features_from(stats: Statistics, columns: Columns, max_categories: int, log=print) -> list[Feature]:
    features = []
    numeric = {name: j for j, name in enumerate(columns.numeric)}
    std = stats.numeric.std()
    for name in columns.features:
        seen = stats.numeric_seen[numeric[name]] if name in numeric else stats.categories_seen[name]
        if seen == 0:
            raise PipelineError(f"column {name!r} has no values (all missing); add it to `ignore`")
        if name in numeric:
            j = numeric[name]
            if stats.numeric.count[j] == 0:
                raise PipelineError(f"column {name!r} has no values in the training split")
            spread = float(std[j]) or 1.0
            features.append(
                Feature(
                    name=name,
                    kind=columns.kind(name),
                    mean=float(stats.numeric.mean[j]),
                    std=spread,
                    missing=int(stats.numeric_missing[j]),
                )
            )
            continue
        counts = stats.categories[name]
        if not counts:
            raise PipelineError(f"column {name!r} has no values in the training split")
        kept = counts
        if len(counts) > max_categories:
            kept = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories])
            folded = sum(counts.values()) - sum(kept.values())
            log(
                f"warning: column {name!r} has {len(counts)} categories; the {len(counts) - max_categories} "
                f"rarest ({folded} training rows) are folded into 'other', encoded like an unseen category "
                f"(raise --max-categories to keep more)"
            )
        if all(is_number(v) for v in counts):
            # Numeric codes are their own values; the one-hot compares against the codes seen in training.
            categories = sorted({float(v) for v in kept})
            labels = [f"{c:g}" for c in categories]
        else:
            # Text categories get codes 0..k-1 in sorted order; other text encodes as all zeros.
            labels = sorted(kept)
            categories = [float(k) for k in range(len(labels))]
        features.append(
            Feature(
                name=name,
                kind="categorical",
                missing=stats.categories_missing[name],
                categories=categories,
                labels=labels,
            )
        )
    return features


@dataclass
class TargetSpec:
    """How target text becomes y: class values (classification) or numbers (regression)."""

    classifier: bool
    values: list[str] = field(default_factory=list)  # class values in class-index order
    positive: str = ""  # binary with an explicit positive value: y = (value == positive)


def encode_rows(numbers: np.ndarray, categories: dict[str, pa.Array], features: list[Feature]) -> np.ndarray:
    """(rows, n_features) float32 raw codes, NaN for missing: the value features (numbers, dates,
    booleans) are the columns of `numbers` in order, the categorical ones are coded from their text."""
    x = np.empty((len(numbers), len(features)), dtype=np.float32)
    numeric = [j for j, f in enumerate(features) if f.kind in VALUE_KINDS]
    if numeric == list(range(len(numeric))):
        x[:, : len(numeric)] = numbers
    else:
        x[:, numeric] = numbers
    for j, feature in enumerate(features):
        if feature.kind == "categorical":
            x[:, j] = category_codes(categories[feature.name], feature)
    return x


def encode(raw: RawChunk, features: list[Feature], target: TargetSpec):
    """(x, y) of a batch: see `encode_rows` and `encode_target`."""
    return encode_rows(raw.numbers, raw.categories, features), encode_target(
        raw.target, target, raw.target_name, raw.locate
    )


def category_codes(values: pa.Array, feature: Feature) -> np.ndarray:
    if feature.labels == [f"{c:g}" for c in feature.categories] and all(is_number(v) for v in feature.labels):
        numbers = pc.match_substring_regex(pc.utf8_lower(values), NUMBER)
        values = pc.if_else(numbers, values, pa.scalar(None, pa.string()))
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    index = pc.index_in(values, value_set=pa.array(feature.labels, pa.string()))
    return pc.cast(index, pa.float64()).to_numpy(zero_copy_only=False)


def encode_target(
    values: pa.Array, target: TargetSpec, name: str, locate: Callable[[int], str]
) -> np.ndarray:
    """int64 class indices (-1 where missing), or float64 values (NaN where missing)."""
    if not target.classifier:
        numbers = pc.fill_null(pc.match_substring_regex(pc.utf8_lower(values), NUMBER), True)
        bad = np.flatnonzero(~numbers.to_numpy(zero_copy_only=False))
        if bad.size:
            i = int(bad[0])
            raise PipelineError(f"column {name!r} {locate(i)}: {values[i].as_py()!r} is not a number")
        y = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        infinite = np.flatnonzero(np.isinf(y))
        if infinite.size:
            i = int(infinite[0])
            raise PipelineError(f"column {name!r} {locate(i)}: '{y[i]:g}' is not a finite number")
        return y
    if target.positive:
        y = pc.fill_null(pc.equal(values, target.positive), False).to_numpy(zero_copy_only=False)
        return y.astype(np.int64)
    index = pc.index_in(values, value_set=pa.array(target.values, pa.string()))
    return pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64)
