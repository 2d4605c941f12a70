"""A table too large for the memory budget, streamed: a row's train / validation / test split is a
seeded hash of its position in the table (so no index of the table's size exists and a row's split does
not depend on how the reading is cut), pass one computes the statistics, and every later pass reads the
table again through the same encoding (`pipeline.data.encoding`) as a table held in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import RunConfig
from pipeline.data.base import SplitTable
from pipeline.data.encoding import (
    DROPPED,
    SPLIT_CODES,
    Columns,
    RawChunk,
    Statistics,
    encode,
    features_from,
    prepare,
)
from pipeline.data.job import Job
from pipeline.data.readahead import read_ahead
from pipeline.data.schema import settle_target, target_scale
from pipeline.errors import PipelineError


@dataclass(kw_only=True)
class StreamingDataset(SplitTable):
    """A table too large for the memory budget: every pass reads it again, through the same encoding."""

    table: object  # a pipeline.data.table.Table (this process's shard)
    columns: Columns
    seed: int
    fractions: tuple[float, float]  # (validation, test)
    local_train: list[int] = field(default_factory=list)  # training rows of each process
    cached: dict[str, list] = field(default_factory=dict)  # small splits kept after their first pass
    cache_rows: int = 0  # a split with at most this many rows is kept in memory
    streamed = True

    def raw_chunks(self) -> Iterator[tuple[RawChunk, np.ndarray]]:
        names = self.columns
        for chunk in names.chunks(self.table):
            raw = prepare(chunk, names)
            yield raw, streamed_split(raw, self.seed, self.fractions)

    def chunks(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) of the rows of `split`, in table order, parsed on a background thread."""
        if split in self.cached:
            return iter(self.cached[split])
        return read_ahead(self.read_split(split))

    def read_split(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) of the rows of `split`, read on the caller's thread (the training batches read ahead
        themselves); a small split is kept once read through."""
        keep = self.rows[split] <= self.cache_rows
        kept = []
        code = SPLIT_CODES[split]
        for raw, splits in self.raw_chunks():
            rows = splits == code
            if rows.any():
                x, y = encode(raw, self.features, self.plan.spec)
                part = (x[rows], y[rows])
                if keep:
                    kept.append(part)
                yield part
        if keep:
            self.cached[split] = kept

    def held_out(self, n: int) -> np.ndarray:
        parts, total = [], 0
        for x, _ in self.read_split("test"):
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


def load_streamed(table, columns: Columns, config: RunConfig, budget: int, log, job: Job) -> StreamingDataset:
    stats = Statistics.empty(columns)
    fractions = (config.val_fraction, config.test_fraction)
    for chunk in read_ahead(columns.chunks(table)):
        raw = prepare(chunk, columns)
        split = streamed_split(raw, config.seed, fractions)
        stats.scan(raw.numbers, raw.categories, split)
        stats.scan_target(raw.target, train=split == SPLIT_CODES["train"])
    local_train = job.gather(stats.rows["train"])
    stats = stats.agreed(job)
    plan = settle_target(stats, config, log)
    for name, count in stats.rows.items():
        if count == 0:
            raise PipelineError(f"the {name} split of {table.describe()} is empty; the table is too small")
    features = features_from(stats, columns, config.max_categories, log)
    return StreamingDataset(
        features=features,
        plan=plan,
        rows=dict(stats.rows),
        scale=target_scale(plan, stats.target),
        files=list(table.files),
        table=table,
        columns=columns,
        seed=config.seed,
        fractions=fractions,
        local_train=local_train,
        cache_rows=budget // 4 // (4 * len(features) + 8),
    )
