"""The model repository as served: which versions of which models answer, read from the disk.

`read(name)` loads and verifies the versions that config.pbtxt's version_policy asks for (blocking: the
server calls it off the event loop), reusing versions already served unchanged and remembering refusals
so a broken file is not re-read until it changes; `apply()` swaps the result in with one assignment of a
fresh dict. A request takes what `get()` finds once, so it never sees half an update, and a request that
found a version keeps it, with its batching queue, until answered, however many swaps happen meanwhile.
`changed()` is the poll's cheap look (a few stats per model) at what moved on disk since the last read.

A new version whose input schema breaks the one clients use now (contract.schema: the default version's)
is refused with the reason, unless manifest.json records that it was published with --allow-breaking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contract.errors import ContractError
from contract.repository import is_model_name, published_versions, read_manifest
from contract.schema import breaking_allowed, breaking_changes
from serve.batching import Batcher, BatchingConfig
from serve.errors import ModelLoadError, NotFound, Unavailable
from serve.metrics import Metrics
from serve.model import Model
from serve.policy import PolicyError
from serve.store import read_config, read_policy, signature, version_key
from serve.triton import ConfigError


@dataclass(frozen=True)
class Served:
    """One loaded version and its batching queue."""

    model: Model
    batcher: Batcher
    key: tuple  # (version, sha256 recorded for it, model.onnx's identity on disk) when it was loaded


@dataclass(frozen=True, kw_only=True)
class ModelState:
    """One model as served now. Replaced whole, never changed in place."""

    versions: dict[str, Served] = field(default_factory=dict)  # served, by version number
    refused: dict[str, str] = field(default_factory=dict)  # version → why the policy's pick is not served
    error: str = ""  # why the model directory itself could not be read ('' when it could)
    signature: tuple | None = None  # the directory as last read (see `signature`)
    attempts: dict[tuple, str] = field(default_factory=dict)  # Served.key → refusal, not retried
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


class Repository:
    def __init__(self, path: Path, threads: int = 1, batching: BatchingConfig | None = None, metrics=None):
        self.path = Path(path)
        self.threads = threads  # onnxruntime intra-op threads per model version
        self.batching = batching or BatchingConfig()
        self.metrics = metrics or Metrics()
        self.states: dict[str, ModelState] = {}  # replaced whole on every change (see `apply`)
        self.loading = True  # true until the first `load_all` finished

    # -- reading the disk (blocking) ---------------------------------------------------------------
    def candidates(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and is_model_name(p.name))

    def changed(self) -> list[str]:
        """Models whose directory appeared, changed or disappeared since it was last read."""
        names = set(self.candidates()) | set(self.states)
        return sorted(
            n
            for n in names
            if not self.states.get(n, ModelState()).unloaded
            and (n not in self.states or signature(self.path / n) != self.states[n].signature)
        )

    def read(self, name: str) -> ModelState | None:
        """The state `name` should have now (None: its directory is gone). Loads what is new."""
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
            return ModelState(
                versions=previous.versions,
                refused=previous.refused,
                error=str(exc),
                signature=before,
                attempts=previous.attempts,
                config=previous.config,
            )
        served, refused, attempts = {}, {}, {}
        available = published_versions(directory)
        for version in policy.candidates(available):
            if policy.wanted is not None and len(served) == policy.wanted:
                break
            if version not in available:
                refused[str(version)] = f"no {version}/model.onnx"
                continue
            key = version_key(directory, manifest, version)
            kept = previous.versions.get(str(version))
            if kept is not None and kept.key == key:
                served[str(version)] = kept
            elif key in previous.attempts:
                refused[str(version)] = attempts[key] = previous.attempts[key]
            else:
                try:
                    model = Model.load(directory, self.threads, version)
                    check_schema(previous.default, model)
                    served[str(version)] = Served(model, Batcher(model, self.batching, self.metrics), key)
                except ModelLoadError as exc:
                    refused[str(version)] = attempts[key] = str(exc)
        error = "" if available or policy.kind == "specific" else "no version directory with a model.onnx"
        return ModelState(
            versions=served, refused=refused, error=error, signature=before, attempts=attempts, config=config
        )

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
            raise NotFound(f"unknown model {name!r}")
        if self.loading:
            raise Unavailable("the server is still loading its models")
        state = self.states.get(name)
        if state is None:
            raise NotFound(f"unknown model {name!r}")
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
        raise NotFound(f"model {name!r} has no version {version!r} (serving {serving})")

    def index(self, ready_only: bool = False) -> list[dict]:
        """Triton's repository index: a row per served version (READY), per refused version and per
        unreadable or unloaded model (UNAVAILABLE, with the reason)."""
        rows = []
        for name, state in sorted(self.states.items()):
            rows += [{"name": name, "version": v, "state": "READY"} for v in sorted(state.versions, key=int)]
            rows += [
                {"name": name, "version": v, "state": "UNAVAILABLE", "reason": r}
                for v, r in sorted(state.refused.items(), key=lambda item: int(item[0]))
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
    lines += [f"refused {name} version {v}: {r}" for v, r in state.refused.items()]
    if state.error or not lines:
        lines.append(f"refused {name}: {state.error or state.reason}")
    return lines
