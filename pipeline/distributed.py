"""Training on several processes and machines, through PyTorch's own launcher (torchrun).

`python -m pipeline train --nproc N` starts N workers on this machine with torch.distributed.run; across
machines the same entry point runs under `torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m pipeline train …`. A worker finds its rank and world in the environment
torchrun sets, joins the process group (gloo on CPU, NCCL on CUDA: a row of `BACKENDS`) and uses the
few collectives below; with one process they do nothing.
"""

from __future__ import annotations

import ctypes
import datetime
import logging
import os
import signal
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from pipeline.errors import PipelineError

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)  # a collective waiting longer than this fails
LAUNCHER = "PIPELINE_LAUNCHER_PID"  # set by `launch` for its workers: they die with it
PR_SET_PDEATHSIG = 1  # linux/prctl.h
TORCHRUN_LOGGERS = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")


@dataclass(frozen=True)
class Backend:
    name: str
    device: str  # where the model and the collectives' tensors live

    def available(self) -> str:
        """Why this backend cannot run here ("" when it can)."""
        if not dist.is_backend_available(self.name):
            return f"torch.distributed has no {self.name} backend in this build"
        if self.device == "cuda" and not torch.cuda.is_available():
            return f"{self.name} needs a CUDA device and none is visible"
        return ""


BACKENDS = {"gloo": Backend("gloo", "cpu"), "nccl": Backend("nccl", "cuda")}


def backend_for(name: str) -> Backend:
    """`auto`: NCCL with CUDA devices, gloo otherwise."""
    if name == "auto":
        name = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if name not in BACKENDS:
        raise PipelineError(f"backend {name!r} must be auto, {', '.join(BACKENDS)}")
    reason = BACKENDS[name].available()
    if reason:
        raise PipelineError(reason)
    return BACKENDS[name]


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; with world 1 every collective returns its input."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: Backend = BACKENDS["gloo"]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if self.backend.device == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def gather(self, value) -> list:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        if self.world == 1:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def total(self, values: np.ndarray) -> np.ndarray:
        """Elementwise sum over ranks (float64 or int64 arrays)."""
        if self.world == 1:
            return values
        tensor = torch.from_numpy(np.ascontiguousarray(values)).to(self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def broadcast(self, value, source: int = 0):
        """Rank `source`'s `value` (picklable) on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=source)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Dist()


def from_environment(backend: str = "auto") -> Dist:
    """The job torchrun started this process in, its process group joined; SINGLE outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE
    chosen = backend_for(backend)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if chosen.device == "cuda":
        torch.cuda.set_device(local_rank)
    else:  # share this machine's cores between its workers
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group(chosen.name, store=attempt_store(rank, world), rank=rank, world_size=world)
    return Dist(rank, world, local_rank, chosen)


def attempt_store(rank: int, world: int) -> dist.Store:
    """The rendezvous store, its keys prefixed with torchrun's restart count: after a restart the store
    still holds the failed attempt's addresses, which a fast worker would otherwise read and connect to."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # the launcher hosts the store
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent and rank == 0,
        timeout=COLLECTIVE_TIMEOUT,
        multi_tenant=not agent,
    )
    return dist.PrefixStore(f"attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shutdown(job: Dist) -> None:
    if job.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def cause_order(failure) -> int:
    """Which failure caused the others: a worker killed by a signal (not the launcher's SIGTERM), then
    one that stopped with this project's error exit (2), then any other exit, then the terminated."""
    if failure.exitcode < 0:
        return 3 if failure.signal_name() in ("SIGTERM", "SIGINT") else 0
    return 1 if failure.exitcode == 2 else 2


def die_with_launcher() -> None:
    """In a worker that `launch` started: SIGTERM when the launcher dies, however it dies (SIGKILL too),
    so that no orphaned worker trains on, unwatched, and publishes after the job was stopped. SIGINT and
    SIGTERM end the worker at once and quietly: the launcher says what happened, in one line (a worker
    unwinding would print the error of a collective its peer left, or a KeyboardInterrupt's traceback).
    Publication is atomic, so what was published is whole."""
    launcher = os.environ.get(LAUNCHER)
    if not launcher:
        return  # started by torchrun itself (several machines): torchrun's own rules
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda signum, frame: os._exit(128 + signum))
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(launcher):  # the launcher was gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def launch(argv: list[str], nproc: int, max_restarts: int) -> int:
    """Run `python -m pipeline <argv>` as `nproc` workers on this machine through torch.distributed.run.
    A failed worker (after the restarts) ends the job with one line naming its rank; exit 2. SIGINT or
    SIGTERM stops the workers and ends it with one line; exit 130 or 143."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in list(logging.Logger.manager.loggerDict):  # its own reports: ours is one line below
        if name.startswith(TORCHRUN_LOGGERS):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ[LAUNCHER] = str(os.getpid())
    # The cores shared out between the workers (torchrun would set 1 and print a warning about it).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = parse_args(
        [
            "--standalone",
            f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}",
            "--monitor-interval=0.5",
            "-m",
            "pipeline",
            *argv,
        ]
    )
    try:
        run(args)
    except SignalException as exc:  # torchrun stopped the workers before raising this
        how = "interrupted" if exc.sigval == signal.SIGINT else f"stopped by {exc.sigval.name}"
        print(f"{how}: the workers were stopped; nothing was published", file=sys.stderr)
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items(), key=lambda item: (cause_order(item[1]), item[0]))
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        restarts = f" after {max_restarts} restart(s)" if max_restarts else ""
        print(
            f"error: rank {rank} (pid {failure.pid}) failed with {how}{restarts}; nothing was published",
            file=sys.stderr,
        )
        return 2
    return 0
