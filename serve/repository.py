"""The model repository as served: which versions of which models answer, read from the disk.

`read(name)` loads, verifies and warms (serve/warmup.py) the versions that config.pbtxt's version_policy
asks for (blocking: the server calls it off the event loop), reusing versions already served unchanged and
remembering refusals so a broken file is not re-read until it changes; `apply()` swaps the result in with
one assignment of a fresh dict, so a version is never served (nor counted ready) before it is warm. A
served version whose file changes is verified again: a good file replaces it, a broken one is refused as a
new version would be while the loaded copy serves on, and the index and the `model_disk_copy_broken`
metric say so. A read that failed because the disk could not be read (permissions, I/O) is not
remembered: the next poll, or an explicit load, tries again.

A request takes what `get()` finds once, so it never sees half an update, and a request that found a
version keeps it, with its batching queue, until answered, however many swaps happen meanwhile.
`changed()` is the poll's cheap look (a few stats per model) at what moved on disk since the last read.

A new version whose input schema breaks the one clients use now (contract.schema: the default version's)
is refused with the reason, unless manifest.json records that it was published with --allow-breaking.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from contract.errors import ContractError
from contract.repository import is_model_name, read_manifest
from contract.schema import breaking_allowed, breaking_changes
from serve.batching import Batcher, BatchingConfig
from serve.errors import ModelLoadError, NotFound, Unavailable, quoted
from serve.metrics import Metrics
from serve.model import Model
from serve.policy import PolicyError
from serve.store import list_versions, read_config, read_policy, signature, transient, version_key
from serve.triton import ConfigError
from serve.warmup import WarmUp, warm_up


@dataclass(frozen=True)
class Served:
    """One loaded version and its batching queue."""

    model: Model
    batcher: Batcher
    key: tuple  # (version, sha256 recorded for it, model.onnx's identity on disk) when it was loaded
    warmup: WarmUp | None = None  # what ran before it was served (None: warm-up is off)


@dataclass(frozen=True, kw_only=True)
class ModelState:
    """One model as served now. Replaced whole, never changed in place."""

    versions: dict[str, Served] = field(default_factory=dict)  # served, by version number
    refused: dict[str, str] = field(default_factory=dict)  # version → why the policy's pick is not served
    broken: dict[str, str] = field(default_factory=dict)  # served version → why its changed file is refused
    odd: dict[str, str] = field(default_factory=dict)  # directory that is not a version → why
    error: str = ""  # why the model directory itself could not be read ('' when it could)
    signature: tuple | None = None  # the directory as last read (see `signature`)
    attempts: dict[tuple, str] = field(default_factory=dict)  # Served.key → refusal, not retried
    retry: bool = False  # the disk could not be read (permissions, I/O): read again at the next poll
    unloaded: bool = False  # explicitly unloaded: not served, not polled, until loaded again
    config: object = None  # config.pbtxt as Triton's ModelConfig message (None without one); never changed

    @property
    def default(self) -> Served | None:
        """The version a request without one gets: the highest served."""
        return self.versions[max(self.versions, key=int)] if self.versions else None

    @property
    def reason(self) -> str:
        """Why nothing is served ('' when something is)."""
        if self.versions:
            return ""
        if self.unloaded:
            return "unloaded"
        return self.error or next(iter(self.refused.values()), "no version to serve")


DISK_COPY_REFUSED = "serving the copy loaded before; the file on disk is refused"


class Repository:
    def __init__(
        self,
        path: Path,
        threads: int = 1,
        batching: BatchingConfig | None = None,
        metrics=None,
        *,
        warmup: bool = True,
        log=print,
    ):
        self.path = Path(path)
        self.threads = threads  # onnxruntime intra-op threads per model version
        self.batching = batching or BatchingConfig()
        self.metrics = metrics or Metrics()
        self.warmup = warmup  # run every batch size once before a loaded version serves (serve/warmup.py)
        self.log = log
        self.states: dict[str, ModelState] = {}  # replaced whole on every change (see `apply`)
        self.loading = True  # true until the first `load_all` finished

    # -- reading the disk (blocking) ---------------------------------------------------------------
    def candidates(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and is_model_name(p.name))

    def changed(self) -> list[str]:
        """Models whose directory appeared, changed or disappeared since it was last read, and those whose
        last read could not read the disk."""
        names = set(self.candidates()) | set(self.states)
        return sorted(
            n
            for n in names
            if not self.states.get(n, ModelState()).unloaded
            and (
                n not in self.states
                or self.states[n].retry
                or signature(self.path / n) != self.states[n].signature
            )
        )

    def read(self, name: str, fresh: bool = False) -> ModelState | None:
        """The state `name` should have now (None: its directory is gone). Loads what is new; `fresh`
        (an explicit load) also tries again what was refused before."""
        directory = self.path / name
        before = signature(directory)
        if before is None:
            return None
        previous = self.states.get(name, ModelState())
        try:
            policy = read_policy(directory)
            config = read_config(directory)
            manifest = read_manifest(directory)
        except (ContractError, PolicyError, ConfigError) as exc:
            # the directory as a whole is unreadable: what was served stays served
            return replace(previous, error=str(exc), signature=before, retry=transient(exc), unloaded=False)
        listing = list_versions(directory)
        served, refused, broken, attempts, retry = {}, {}, {}, {}, False
        for version in policy.candidates(listing.versions):
            if policy.wanted is not None and len(served) == policy.wanted:
                break
            number, kept = str(version), previous.versions.get(str(version))
            if version in listing.unreadable:
                reason, retry = listing.unreadable[version], True
            elif version not in listing.available:
                refused[number] = f"no {version}/model.onnx"
                continue
            else:
                key = version_key(directory, manifest, version)
                if kept is not None and kept.key == key:
                    served[number] = kept
                    continue
                reason = None if fresh else previous.attempts.get(key)
                if reason is None:
                    try:
                        model = Model.load(directory, self.threads, version)
                        check_schema(previous.default, model)
                        warmed = self.warm(model)
                        batcher = Batcher(model, self.batching, self.metrics)
                        served[number] = Served(model, batcher, key, warmed)
                        continue
                    except ModelLoadError as exc:
                        reason, retry = str(exc), retry or exc.transient
                        if not exc.transient:  # a wrong file is not read again until it changes
                            attempts[key] = reason
                else:
                    attempts[key] = reason
            if kept is not None:  # what was verified and loaded serves on until a good file replaces it
                served[number], broken[number] = kept, reason
            else:
                refused[number] = reason
        error = "no version directory with a model.onnx"
        error = "" if listing.versions or policy.kind == "specific" else error
        return ModelState(
            versions=served,
            refused=refused,
            broken=broken,
            odd=listing.odd,
            error=error,
            signature=before,
            attempts=attempts,
            retry=retry,
            config=config,
        )

    def warm(self, model: Model) -> WarmUp | None:
        """Warm a version just loaded (ModelLoadError when that fails), logging what it took."""
        if not self.warmup:
            return None
        warmed = warm_up(model, self.batching.max_batch_rows)
        self.log(f"warmed {model.name} version {model.version}: {warmed.describe()}")
        return warmed

    # -- what requests see -------------------------------------------------------------------------
    def apply(self, name: str, state: ModelState | None) -> list[Served]:
        """Swap in `state` for `name` (None removes it); returns the versions no longer served."""
        old = self.states.get(name, ModelState())
        states = dict(self.states)
        if state is None:
            states.pop(name, None)
        else:
            states[name] = state
            if name not in self.states:
                self.metrics.watch_queue(name, lambda: self.queued(name))
        self.states = states  # one assignment: a reader sees the old dict or the new one
        self.metrics.ready.set(int(self.ready))
        self.metrics.disk_copies(name, old.broken, state.broken if state else {})
        kept = {id(s) for s in (state.versions.values() if state else ())}
        return [s for s in old.versions.values() if id(s) not in kept]

    def load_all(self, log=print) -> Repository:
        """Read every model directory once (at startup), logging what is served and what is refused."""
        self.loading = True
        try:
            for name in self.candidates():
                self.apply(name, self.read(name))
                for line in describe(name, self.states[name]):
                    log(line)
        finally:
            self.loading = False
        if not self.models:
            log(f"no servable model in {self.path}")
        return self

    @property
    def models(self) -> dict[str, Model]:
        """Each served model's default version."""
        return {n: s.default.model for n, s in self.states.items() if s.versions}

    @property
    def failed(self) -> dict[str, str]:
        """Models that serve nothing (explicitly unloaded ones aside), with the reason."""
        return {n: s.reason for n, s in self.states.items() if not s.versions and not s.unloaded}

    @property
    def ready(self) -> bool:
        """Every model serves a version, at least one model does (Triton's strict readiness)."""
        return not self.loading and bool(self.models) and not self.failed

    def queued(self, name: str) -> int:
        state = self.states.get(name)
        return sum(len(s.batcher.pending) for s in state.versions.values()) if state else 0

    def get(self, name: str, version: str | None = None) -> Served:
        """The served version (the default when None), or NotFound / Unavailable with the reason.
        Names are checked before anything else is looked at."""
        if not is_model_name(name):
            raise NotFound(f"unknown model {quoted(name)}")
        if self.loading:
            raise Unavailable("the server is still loading its models")
        state = self.states.get(name)
        if state is None:
            raise NotFound(f"unknown model {quoted(name)}")
        if not state.versions:
            raise Unavailable(f"model {name!r} is not available: {state.reason}")
        if version is None:
            return state.default
        served = state.versions.get(version)
        if served is not None:
            return served
        if version in state.refused:
            raise Unavailable(f"model {name!r} version {version} is not available: {state.refused[version]}")
        serving = ", ".join(sorted(state.versions, key=int))
        raise NotFound(f"model {name!r} has no version {quoted(version)} (serving {serving})")

    def index(self, ready_only: bool = False) -> list[dict]:
        """Triton's repository index: a row per served version (READY; with a reason when its file on
        disk is refused and the copy loaded before serves on), per refused version, per directory that is
        not a version, and per unreadable or unloaded model (UNAVAILABLE, with the reason)."""
        rows = []
        for name, state in sorted(self.states.items()):
            for v in sorted(state.versions, key=int):
                rows.append({"name": name, "version": v, "state": "READY"})
                if v in state.broken:
                    rows[-1]["reason"] = f"{DISK_COPY_REFUSED}: {state.broken[v]}"
            rows += [
                {"name": name, "version": v, "state": "UNAVAILABLE", "reason": r}
                for v, r in sorted(state.refused.items(), key=lambda item: int(item[0]))
            ]
            rows += [
                {"name": name, "version": v, "state": "UNAVAILABLE", "reason": r}
                for v, r in sorted(state.odd.items())
            ]
            if state.error or state.unloaded or not (state.versions or state.refused):
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": state.error or state.reason})
        return [r for r in rows if r["state"] == "READY"] if ready_only else rows


def check_schema(served: Served | None, model: Model) -> None:
    """Refuse (ModelLoadError) a new version whose input schema breaks the served default's, unless its
    manifest allows it."""
    if served is None:
        return
    changes = breaking_changes(served.model.schema, model.schema)
    if changes and not breaking_allowed(model.manifest, int(served.model.version), int(model.version)):
        raise ModelLoadError(
            f"its input schema breaks version {served.model.version}'s, which clients use now: "
            f"{'; '.join(changes)} (publish it under a new model name, or export it with --allow-breaking)"
        )


def describe(name: str, state: ModelState | None) -> list[str]:
    """Log lines for a model's new state."""
    if state is None:
        return [f"removed {name}"]
    served = ", ".join(sorted(state.versions, key=int))
    lines = [f"serving {name} version(s) {served}"] if state.versions else []
    lines += [f"{name} version {v}: {DISK_COPY_REFUSED}: {r}" for v, r in state.broken.items()]
    lines += [f"refused {name} version {v}: {r}" for v, r in state.refused.items()]
    lines += [f"refused {name} directory {v!r}: {r}" for v, r in state.odd.items()]
    if state.error or not lines:
        lines.append(f"refused {name}: {state.error or state.reason}")
    return lines
