"""What a training table offers the training loop, however it is held: its feature spec and target
plan, row counts per split, (x, y) chunks of a split, a few held-out rows, and the files it was read
from. `pipeline.data.dataset.Dataset` holds the encoded table in memory; `pipeline.data.streaming.
StreamingDataset` reads it again on every pass. The loop uses this interface alone; the one place that
differs (how mini-batches are drawn) looks the dataset's kind up in a table (pipeline.training.loop)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.features import Feature
from pipeline.data.schema import TargetPlan


@dataclass(kw_only=True)
class SplitTable:
    features: list[Feature]
    plan: TargetPlan
    rows: dict[str, int]  # rows per split ("train", "val", "test"), all processes
    scale: tuple[float, float] = (0.0, 1.0)  # regression: training mean and std of the target
    files: list[Path]  # the table's files (the resume fingerprint covers them)
    dialect: dict = field(default_factory=dict)  # CSV: the delimiter and decimal mark it was read with
    streamed = False  # reported: which way the table went

    @property
    def task(self) -> str:
        return self.plan.task

    @property
    def class_names(self) -> list[str]:
        return self.plan.class_names

    @property
    def target_names(self) -> list[str]:
        return self.plan.target_names

    @property
    def dropped(self) -> int:
        return self.plan.dropped

    @property
    def n_classes(self) -> int:
        return len(self.plan.class_names)

    def chunks(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) of the rows of `split` held by this process, in table order."""
        raise NotImplementedError

    def held_out(self, n: int) -> np.ndarray:
        """Up to `n` test rows of this process (raw features)."""
        raise NotImplementedError
