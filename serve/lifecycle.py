"""Keeping the served models in step with the repository while requests flow: the poll, Triton's
explicit model control (load, unload), and retiring replaced versions once their queues have drained.

Reading and verifying a model (sha256, onnxruntime session, graph against manifest) runs on one
background thread, never on the event loop; the swap (`Repository.apply`) runs on the event loop, between
requests, under one lock so the poll and a control request never interleave. A retired version is not
closed: requests that hold it finish on it, and it is freed when the last of them lets go.

Unload is sticky: the poll leaves an unloaded model alone until it is loaded again. With several worker
processes each polls on its own, and unloads are shared through `control_file`, a JSON list of unloaded
names that every worker reads on its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from contract.repository import is_model_name
from serve.errors import BadRequest, NotFound
from serve.repository import ModelState, Repository, describe
from serve.store import identity

CONTROL_TICK_S = 1.0  # how often workers look at the shared unloads when the poll is off


class Lifecycle:
    def __init__(self, repository: Repository, poll_s: float, log=print, control_file: Path | None = None):
        self.repository, self.poll_s, self.log = repository, poll_s, log
        self.control_file = control_file
        self.control_seen: tuple | None = None  # the control file's identity when last read
        self.loader = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()

    # -- background ----------------------------------------------------------------------------------
    def start(self) -> None:
        tick = self.poll_s or (CONTROL_TICK_S if self.control_file else 0)
        if tick:
            self.spawn(self.poll_forever(tick))

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.loader.shutdown(wait=False, cancel_futures=True)
        # a load in progress finishes first: exiting while onnxruntime builds a session can abort
        await asyncio.get_running_loop().run_in_executor(None, self.loader.shutdown)

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.tasks.discard)

    async def poll_forever(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            if self.repository.loading:
                continue
            try:
                if self.control_file:
                    await self.follow_control()
                if self.poll_s:
                    async with self.lock:
                        for name in await self.blocking(self.repository.changed):
                            await self.reread(name)
            except Exception:  # a defect of ours: keep serving and keep polling
                traceback.print_exc(file=sys.stderr)

    async def blocking(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.loader, function, *args)

    async def reread(self, name: str) -> ModelState | None:
        state = await self.blocking(self.repository.read, name)
        self.swap(name, state)
        return state

    def swap(self, name: str, state: ModelState | None) -> None:
        for served in self.repository.apply(name, state):
            self.spawn(self.retire(name, served))
        for line in describe(name, state):
            self.log(line)

    async def retire(self, name: str, served) -> None:
        while served.batcher.pending:
            await asyncio.sleep(0.01)
        self.log(f"unloaded {name} version {served.model.version} (its queue drained)")

    # -- Triton's explicit model control ----------------------------------------------------------------
    async def load(self, name: str) -> None:
        """(Re)read one model now; refuses with the reason when the policy's versions do not all load
        (what loaded, or was served before, keeps serving)."""
        if not is_model_name(name) or not (self.repository.path / name).is_dir():
            raise NotFound(f"no model directory {name!r} in the repository")
        if self.control_file:
            await self.blocking(self.share, name, False)
        async with self.lock:
            state = await self.reread(name)
        if state is None:
            raise NotFound(f"no model directory {name!r} in the repository")
        problems = [f"version {v}: {r}" for v, r in state.refused.items()]
        if state.error or not state.versions:
            problems.insert(0, state.error or state.reason)
        if problems:
            serving = ", ".join(sorted(state.versions, key=int)) or "nothing"
            raise BadRequest(f"failed to load {name!r}: {'; '.join(problems)} (serving {serving})")

    async def unload(self, name: str) -> None:
        """Stop serving `name` now; queued requests still finish. The poll leaves it until a load."""
        state = self.repository.states.get(name) if is_model_name(name) else None
        if state is None:
            raise NotFound(f"unknown model {name!r}")
        if self.control_file:
            await self.blocking(self.share, name, True)
        async with self.lock:
            self.swap(name, ModelState(unloaded=True, signature=state.signature))

    # -- unloads shared between workers -----------------------------------------------------------------
    def share(self, name: str, unloaded: bool) -> None:
        """Record `name` as unloaded (or not) in the control file, under a lock between workers."""
        with open(f"{self.control_file}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            names = set(read_control(self.control_file))
            names = names | {name} if unloaded else names - {name}
            temporary = f"{self.control_file}.{os.getpid()}.tmp"
            Path(temporary).write_text(json.dumps(sorted(names)))
            os.replace(temporary, self.control_file)

    async def follow_control(self) -> None:
        """Apply what other workers did: unload what they unloaded, reload what they loaded."""
        seen = await self.blocking(identity, self.control_file)
        if seen == self.control_seen:
            return
        self.control_seen = seen
        unloaded = set(await self.blocking(read_control, self.control_file))
        async with self.lock:
            for name, state in list(self.repository.states.items()):
                if name in unloaded and not state.unloaded:
                    self.swap(name, ModelState(unloaded=True, signature=state.signature))
                elif name not in unloaded and state.unloaded:
                    await self.reread(name)


def read_control(path: Path) -> list[str]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        names = json.loads(Path(path).read_text())
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    return []
