"""Loading a model repository: every valid model directory is served, every invalid one is reported."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from serve.errors import ModelLoadError, NotFound, Unavailable
from serve.model import Model

MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class Repository:
    path: Path
    threads: int = 1  # onnxruntime intra-op threads per model
    models: dict[str, Model] = field(default_factory=dict)  # loaded and ready
    failed: dict[str, str] = field(default_factory=dict)  # name → why it is not served
    loading: bool = True  # true until `load_all` finished

    def candidates(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(
            p
            for p in self.path.iterdir()
            if p.is_dir() and not p.name.startswith(".") and MODEL_NAME.fullmatch(p.name)
        )

    def load_all(self, log=print) -> Repository:
        self.loading = True
        try:
            for directory in self.candidates():
                try:
                    self.models[directory.name] = Model(directory, self.threads).load()
                    log(f"loaded {directory.name} (version {self.models[directory.name].version})")
                except ModelLoadError as exc:
                    self.failed[directory.name] = str(exc)
                    log(f"refused {directory.name}: {exc}")
        finally:
            self.loading = False
        if not self.models:
            log(f"no servable model in {self.path}")
        return self

    @property
    def ready(self) -> bool:
        """Every model loaded, at least one, none refused (Triton's strict readiness)."""
        return not self.loading and bool(self.models) and not self.failed

    def get(self, name: str, version: str | None = None) -> Model:
        """The ready model, or NotFound. Names are checked before anything else is looked at."""
        if not MODEL_NAME.fullmatch(name):
            raise NotFound(f"unknown model {name!r}")
        if self.loading:
            raise Unavailable("the server is still loading its models")
        if name in self.failed:
            raise Unavailable(f"model {name!r} is not available: {self.failed[name]}")
        if name not in self.models:
            raise NotFound(f"unknown model {name!r}")
        model = self.models[name]
        if version is not None and version != model.version:
            raise NotFound(f"model {name!r} has no version {version!r} (serving {model.version})")
        return model

    def index(self) -> list[dict]:
        """Triton's repository index: every model with its state and, when unavailable, the reason."""
        rows = [{"name": n, "version": m.version, "state": "READY"} for n, m in self.models.items()]
        rows += [{"name": n, "state": "UNAVAILABLE", "reason": r} for n, r in self.failed.items()]
        return sorted(rows, key=lambda r: r["name"])
