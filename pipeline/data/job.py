"""This process's place in a job, as the data layer needs it: its rank, the number of processes, and
gathering a value from every process. `pipeline.distributed.Dist` (torch.distributed) has this shape; the
data layer itself never imports torch, and with one process it needs nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Job(Protocol):
    rank: int
    world: int

    def gather(self, value) -> list:
        """Every process's `value`, in rank order, on every process."""
        ...


@dataclass(frozen=True)
class Alone:
    """A job of one process."""

    rank: int = 0
    world: int = 1

    def gather(self, value) -> list:
        return [value]


ALONE = Alone()
