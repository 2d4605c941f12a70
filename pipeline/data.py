"""Reading a CSV table and encoding it: feature spec, targets and train / validation / test splits.

The feature matrix stays *raw* (one float32 column per feature: numbers, NaN for missing, category codes);
standardization, imputation and one-hot encoding happen inside the model (`pipeline.models.Preprocess`)
from the statistics recorded here, which come from the training split only.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.tasks import TASKS

MISSING = {"", "na", "nan", "n/a", "?", "null", "none"}  # compared lower-cased and stripped


@dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[list[str]]  # data rows as text; row i is line i + 2 of the file

    def column(self, name: str) -> list[str]:
        j = self.columns.index(name)
        return [row[j] for row in self.rows]


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
class Dataset:
    features: list[Feature]
    x: np.ndarray  # (n_rows, n_features) float32 raw features
    y: np.ndarray  # (n_rows,) int64 class index, or float64 target value
    class_names: list[str]  # classification: display name per class index
    target_names: list[str]  # regression: the target column(s)
    splits: dict[str, np.ndarray]  # "train" / "val" / "test" row indices
    dropped: int = 0  # rows dropped for a missing target

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def target_scale(self) -> tuple[float, float]:
        """Training mean and std of a regression target (the model de-standardizes with them)."""
        y = self.y[self.splits["train"]].astype(np.float64)
        return float(y.mean()), float(y.std()) or 1.0


def read_table(path: str | Path) -> Table:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            records = [row for row in csv.reader(f) if row]
    except FileNotFoundError:
        raise PipelineError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise PipelineError(f"{path} is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise PipelineError(f"{path} is not a readable CSV ({exc})") from None
    if not records:
        raise PipelineError(f"{path} is empty")
    columns = [c.strip() for c in records[0]]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise PipelineError(f"{path}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
    if "" in columns:
        raise PipelineError(f"{path}: column {columns.index('') + 1} of the header has no name")
    rows = records[1:]
    if not rows:
        raise PipelineError(f"{path} has a header but no data rows")
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise PipelineError(f"{path} line {i + 2}: {len(row)} fields where the header has {len(columns)}")
    return Table(path, columns, rows)


def is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING


def parse_number(text: str, column: str, line: int) -> float:
    if is_missing(text):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise PipelineError(
            f"column {column!r} line {line}: {text.strip()!r} is not a number "
            f"(declare the column categorical or ignored)"
        ) from None
    if not math.isfinite(value):
        raise PipelineError(f"column {column!r} line {line}: {text.strip()!r} is not a finite number")
    return value


def parse_column(table: Table, name: str) -> np.ndarray:
    return np.array([parse_number(v, name, i + 2) for i, v in enumerate(table.column(name))])


def looks_numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values if not is_missing(v)]
    except ValueError:
        return False
    return True


def sort_key(values: list[str]):
    """Numeric order for numeric-looking values (so '10' follows '9'), text order otherwise."""
    return float if looks_numeric(values) else str


def load_dataset(config: RunConfig, log=print) -> Dataset:
    table = read_table(config.csv)
    for role, names in (
        ("target", [config.target]),
        ("categorical", config.categorical),
        ("ignored", config.ignore),
    ):
        absent = [n for n in names if n not in table.columns]
        if absent:
            raise PipelineError(
                f"{role} column(s) {', '.join(map(repr, absent))} not in {table.path.name} "
                f"(columns: {', '.join(table.columns)})"
            )
    raw_target = [v.strip() for v in table.column(config.target)]
    keep = [i for i, v in enumerate(raw_target) if not is_missing(v)]
    dropped = len(raw_target) - len(keep)
    if dropped:
        log(f"dropped {dropped} row(s) with a missing {config.target!r}")
    if not keep:
        raise PipelineError(f"target column {config.target!r} has no values")
    table = Table(table.path, table.columns, [table.rows[i] for i in keep])

    task = TASKS[config.task]
    if task.is_classifier:
        y, class_names = encode_classes(table, config)
        target_names: list[str] = []
        splits = split_rows(len(y), config, strata=y, class_names=class_names)
    else:
        y = parse_column(table, config.target)
        class_names, target_names = [], [config.target]
        splits = split_rows(len(y), config, strata=None)

    feature_columns = [c for c in table.columns if c != config.target and c not in config.ignore]
    if not feature_columns:
        raise PipelineError(f"{table.path.name}: no feature columns left after the target and ignored ones")
    features, columns = [], []
    for name in feature_columns:
        feature, codes = encode_feature(table, name, name in config.categorical, splits["train"])
        features.append(feature)
        columns.append(codes)
    x = np.stack(columns, axis=1).astype(np.float32)
    return Dataset(features, x, y, class_names, target_names, splits, dropped)


def encode_classes(table: Table, config: RunConfig) -> tuple[np.ndarray, list[str]]:
    values = [v.strip() for v in table.column(config.target)]
    classes = sorted(set(values), key=sort_key(values))
    if config.task == "binary" and config.positive:
        if config.positive not in classes:
            raise PipelineError(
                f"positive value {config.positive!r} never occurs in target {config.target!r} "
                f"(values: {', '.join(classes[:10])})"
            )
        y = np.array([int(v == config.positive) for v in values], dtype=np.int64)
        classes = [f"not {config.positive}", config.positive]
    else:
        if config.task == "binary" and len(classes) > 2:
            raise PipelineError(
                f"binary target {config.target!r} has {len(classes)} values; "
                f"set `positive` to the value of the positive class"
            )
        index = {c: k for k, c in enumerate(classes)}
        y = np.array([index[v] for v in values], dtype=np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise PipelineError(
            f"target {config.target!r} has only one class ({classes[int(present[0])]!r}); "
            f"a classifier needs at least two"
        )
    return y, class_display_names(classes, config)


def class_display_names(classes: list[str], config: RunConfig) -> list[str]:
    if config.class_names:
        if len(config.class_names) != len(classes):
            raise PipelineError(
                f"class_names has {len(config.class_names)} names for {len(classes)} classes ({classes})"
            )
        return list(config.class_names)
    if config.class_names_csv:
        lookup = dict(read_table(config.class_names_csv).rows)
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


def encode_feature(
    table: Table, name: str, categorical: bool, train: np.ndarray
) -> tuple[Feature, np.ndarray]:
    """One column: its spec (from training rows) and its raw float codes for every row."""
    text = table.column(name)
    if all(is_missing(v) for v in text):
        raise PipelineError(f"column {name!r} has no values (all missing); add it to `ignore`")
    if not categorical:
        values = parse_column(table, name)
        seen = values[train][~np.isnan(values[train])]
        if seen.size == 0:
            raise PipelineError(f"column {name!r} has no values in the training split")
        feature = Feature(
            name, "numeric", float(seen.mean()), float(seen.std()) or 1.0, int(np.isnan(values[train]).sum())
        )
        return feature, values
    stripped = [v.strip() for v in text]
    missing = np.array([is_missing(v) for v in stripped])
    train_labels = sorted({stripped[i] for i in train if not missing[i]}, key=sort_key(stripped))
    if looks_numeric(stripped):
        # Numeric codes are their own values; the one-hot compares against the codes seen in training.
        codes = np.array([math.nan if m else float(v) for v, m in zip(stripped, missing)])
        categories = sorted({float(v) for v in train_labels})
        labels = [f"{c:g}" for c in categories]
    else:
        # Text categories get codes 0..k-1 in sorted order; unseen text is NaN (encodes as all zeros).
        index = {label: float(k) for k, label in enumerate(train_labels)}
        codes = np.array([index.get(v, math.nan) for v in stripped])
        categories, labels = list(index.values()), train_labels
    if not categories:
        raise PipelineError(f"column {name!r} has no values in the training split")
    feature = Feature(
        name, "categorical", missing=int(missing[train].sum()), categories=categories, labels=labels
    )
    return feature, codes
