"""The state every epoch leaves behind, so a job that torchrun restarts after a failed worker resumes from
the last completed epoch (weights, optimizer, random streams, early-stopping state) and reaches the same
weights as a run that never failed.

The state is written only under torchrun (each machine's first worker keeps a copy beside the run
directory, hidden) and read only after a restart, by rank 0, which hands it to the others. A state from
another configuration, world size or table is ignored: the fingerprint covers the table's content (each
file's sha256), not only its files' names, sizes and times, which an edit in place can keep (`cp -p`,
`touch -r`); Parquet metadata would not do either, since values moved between rows keep every size and
statistic. The hash costs one read of the table (about 1.5 GB/s), once per job and only under torchrun.
It is removed once the run is published.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from contract.publish import atomic_write
from contract.repository import sha256_of
from pipeline.distributed import Dist


@dataclass(kw_only=True)
class Resume:
    path: Path  # the state file
    identity: dict = field(repr=False)  # the configuration, the world size and the table's files
    enabled: bool  # running under torchrun: write a state every epoch
    restarted: bool  # torchrun restarted this job: read the state

    @classmethod
    def for_run(cls, runs_dir: Path, name: str, config: dict, world: int, files: list[Path]) -> Resume:
        return cls(
            path=runs_dir / f".{name}.resume" / "state.pt",
            identity={"config": config, "world": world, "files": [str(p) for p in files]},
            enabled="TORCHELASTIC_RUN_ID" in os.environ,
            restarted=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0,
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """Of the configuration, the world size and the table's content. Computed on first use, by the
        processes that write or read a state only (hashing a large CSV takes a pass over it)."""
        files = [
            (p, os.stat(p).st_size, os.stat(p).st_mtime_ns, sha256_of(Path(p)))
            for p in self.identity["files"]
        ]
        identity = {**self.identity, "files": files}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

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
