"""The state every epoch leaves behind, so a job that torchrun restarts after a failed worker resumes from
the last completed epoch (weights, optimizer, random streams, early-stopping state) and reaches the same
weights as a run that never failed.

The state is written only under torchrun (each machine's first worker keeps a copy beside the run
directory, hidden) and read only after a restart, by rank 0, which hands it to the others. A state from
another configuration, world size or table is ignored. It is removed once the run is published.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from contract.publish import atomic_write
from pipeline.distributed import Dist


@dataclass(kw_only=True)
class Resume:
    path: Path  # the state file
    fingerprint: str  # of the configuration, the world size and the table's files
    enabled: bool  # running under torchrun: write a state every epoch
    restarted: bool  # torchrun restarted this job: read the state

    @classmethod
    def for_run(cls, runs_dir: Path, name: str, config: dict, world: int, files: list[Path]) -> Resume:
        identity = {
            "config": config,
            "world": world,
            "files": [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        }
        fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return cls(
            path=runs_dir / f".{name}.resume" / "state.pt",
            fingerprint=fingerprint,
            enabled="TORCHELASTIC_RUN_ID" in os.environ,
            restarted=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0,
        )

    def load(self, job: Dist) -> dict | None:
        """The last completed epoch's state, on every rank (None when there is none to resume)."""
        state = None
        if self.restarted and job.is_main and self.path.is_file():
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            if payload.get("fingerprint") == self.fingerprint:
                state = payload
        return job.broadcast(state)

    def save(self, job: Dist, state: dict) -> None:
        if self.enabled and job.local_rank == 0:
            payload = {**state, "fingerprint": self.fingerprint}
            atomic_write(self.path, lambda f: torch.save(payload, f))

    def clear(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)
