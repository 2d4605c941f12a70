"""The one encoding code path: record batches → raw feature matrices and targets, and the statistics
that define the features (from training rows only).

Every row goes the same way whether the table is cached in memory or streamed: `prepare` turns a record
batch into a `RawChunk` (numbers as float32 with NaN for missing, categories and target still text),
`Statistics.scan` accumulates training-row statistics (means and variances in float64, category and
class counts, missing counts) mergeable across batches and processes, `features_from` turns them into the
feature spec, and `encode` gives the float32 matrix the model takes (category codes) and the targets.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import PipelineError
from pipeline.sources import NUMBER, Chunk

MAX_TEXT_CLASSES = 10_000  # a text target with more distinct values is not a classification target
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
DROPPED = 3  # split code of a row without a target value


@dataclass
class Feature:
    name: str
    kind: str  # "numeric" | "categorical"
    mean: float = 0.0  # numeric: training mean, also the imputed value for NaN
    std: float = 1.0  # numeric: training standard deviation (1 when constant)
    missing: int = 0  # missing values in the training split
    categories: list[float] = field(default_factory=list)  # categorical: codes in one-hot order
    labels: list[str] = field(default_factory=list)  # categorical: the text each code stands for

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Columns:
    """Which columns are read how: the target, numeric and categorical features in table order."""

    target: str
    features: list[str]  # feature columns in input order
    categorical: set[str]  # the features one-hot encoded (read as text)

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.features if c not in self.categorical]


@dataclass
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
    numbers = np.empty((chunk.rows, len(numeric)), dtype=np.float32)
    for j, name in enumerate(numeric):
        values = chunk.columns[name].to_numpy(zero_copy_only=False)  # float64, NaN for null
        infinite = np.isinf(values)
        if infinite.any():
            i = int(np.flatnonzero(infinite)[0])
            raise PipelineError(f"column {name!r} {chunk.locate(i)}: '{values[i]:g}' is not a finite number")
        with np.errstate(over="ignore"):
            numbers[:, j] = values
    too_big = np.isinf(numbers)  # finite in float64, beyond float32
    if too_big.any():
        i, j = (int(v[0]) for v in np.nonzero(too_big))
        raise PipelineError(f"column {numeric[j]!r} {chunk.locate(i)}: the value is beyond the float32 range")
    categories = {name: chunk.columns[name] for name in columns.categorical}
    positions = np.arange(chunk.start, chunk.start + chunk.rows, dtype=np.int64)
    target = chunk.columns[columns.target]
    return RawChunk(numbers, categories, target, positions, chunk.locate, columns.target)


def counts_of(values: pa.Array) -> Counter:
    """Value → count of the non-missing values."""
    counted = pc.value_counts(values.drop_null())
    return Counter(dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist())))


@dataclass
class Moments:
    """Count, mean and sum of squared deviations per column, merged exactly (Chan et al.)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Moments:
        return cls(np.zeros(n), np.zeros(n), np.zeros(n))

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """Moments of the non-NaN values of each column of `values` (rows, n), in float64."""
        values = values.astype(np.float64)
        count = (~np.isnan(values)).sum(0).astype(np.float64)
        total = np.nansum(values, axis=0)
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        m2 = np.nansum((values - mean) ** 2, axis=0)
        return cls(count, mean, m2)

    def merge(self, other: Moments) -> None:
        count = self.count + other.count
        delta = other.mean - self.mean
        safe = np.where(count > 0, count, 1)
        self.mean = self.mean + delta * other.count / safe
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / safe
        self.count = count

    def std(self) -> np.ndarray:
        return np.sqrt(np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0))


@dataclass
class Statistics:
    """Everything the feature spec and the task come from, accumulated batch by batch."""

    numeric: Moments  # training rows, per numeric feature
    numeric_seen: np.ndarray  # non-missing values per numeric feature, all rows
    categories: dict[str, Counter]  # categorical feature → training-row value counts
    categories_seen: dict[str, int]  # categorical feature → non-missing values, all rows
    missing: dict[str, int]  # feature → missing values in training rows
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
            Moments.empty(n),
            np.zeros(n, dtype=np.int64),
            {c: Counter() for c in categorical},
            dict.fromkeys(categorical, 0),
            dict.fromkeys(columns.features, 0),
            Counter(),
        )

    def scan(self, raw: RawChunk, columns: Columns, split: np.ndarray) -> None:
        """Add the features of one batch; `split` holds each row's split code (or DROPPED)."""
        train = split == SPLIT_CODES["train"]
        for name, code in SPLIT_CODES.items():
            self.rows[name] += int((split == code).sum())
        self.numeric.merge(Moments.of(raw.numbers[train]))
        self.numeric_seen += (~np.isnan(raw.numbers)).sum(0)
        for j, name in enumerate(columns.numeric):
            self.missing[name] += int(np.isnan(raw.numbers[train, j]).sum())
        mask = pa.array(train)
        for name, values in raw.categories.items():
            in_train = values.filter(mask)
            self.categories[name].update(counts_of(in_train))
            self.categories_seen[name] += len(values) - values.null_count
            self.missing[name] += in_train.null_count

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
            values = pc.cast(target.filter(pa.array(train)).drop_null(), pa.float64()).to_numpy()
            self.target.merge(Moments.of(values.reshape(-1, 1)))

    def merge(self, other: Statistics) -> None:
        """Fold in another process's (or batch range's) statistics."""
        self.numeric.merge(other.numeric)
        self.numeric_seen += other.numeric_seen
        for name, counts in other.categories.items():
            self.categories[name].update(counts)
            self.categories_seen[name] += other.categories_seen[name]
        for name, count in other.missing.items():
            self.missing[name] += count
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
                Feature(name, "numeric", float(stats.numeric.mean[j]), spread, stats.missing[name])
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
            Feature(name, "categorical", missing=stats.missing[name], categories=categories, labels=labels)
        )
    return features


@dataclass
class TargetSpec:
    """How target text becomes y: class values (classification) or numbers (regression)."""

    classifier: bool
    values: list[str] = field(default_factory=list)  # class values in class-index order
    positive: str = ""  # binary with an explicit positive value: y = (value == positive)


def encode(raw: RawChunk, features: list[Feature], target: TargetSpec, columns: Columns):
    """(x, y): (rows, n_features) float32 raw codes with NaN for missing, and int64 class indices or
    float64 values (NaN where the target is missing)."""
    x = np.empty((len(raw), len(features)), dtype=np.float32)
    numeric = {name: j for j, name in enumerate(columns.numeric)}
    for j, feature in enumerate(features):
        if feature.kind == "numeric":
            x[:, j] = raw.numbers[:, numeric[feature.name]]
        else:
            x[:, j] = category_codes(raw.categories[feature.name], feature)
    return x, encode_target(raw, target)


def category_codes(values: pa.Array, feature: Feature) -> np.ndarray:
    if feature.labels == [f"{c:g}" for c in feature.categories] and all(is_number(v) for v in feature.labels):
        numbers = pc.match_substring_regex(pc.utf8_lower(values), NUMBER)
        values = pc.if_else(numbers, values, pa.scalar(None, pa.string()))
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    index = pc.index_in(values, value_set=pa.array(feature.labels, pa.string()))
    return pc.cast(index, pa.float64()).to_numpy(zero_copy_only=False)


def encode_target(raw: RawChunk, target: TargetSpec) -> np.ndarray:
    values = raw.target
    if not target.classifier:
        numbers = pc.fill_null(pc.match_substring_regex(pc.utf8_lower(values), NUMBER), True)
        bad = np.flatnonzero(~numbers.to_numpy(zero_copy_only=False))
        if bad.size:
            i = int(bad[0])
            text = values[i].as_py()
            raise PipelineError(f"column {raw.target_name!r} {raw.locate(i)}: {text!r} is not a number")
        y = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)  # NaN where missing
        infinite = np.flatnonzero(np.isinf(y))
        if infinite.size:
            i = int(infinite[0])
            raise PipelineError(
                f"column {raw.target_name!r} {raw.locate(i)}: '{y[i]:g}' is not a finite number"
            )
        return y
    if target.positive:
        y = pc.fill_null(pc.equal(values, target.positive), False).to_numpy(zero_copy_only=False)
        return y.astype(np.int64)
    index = pc.index_in(values, value_set=pa.array(target.values, pa.string()))
    return pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64)
