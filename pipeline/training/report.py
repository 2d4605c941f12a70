"""A training run's report.json (config, metrics, history); its figures: `pipeline.training.figures`."""

from __future__ import annotations

import json
from pathlib import Path

from contract.publish import atomic_write


def write_json(path: Path, values: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(values, indent=2) + "\n").encode()))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
