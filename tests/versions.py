"""Versions of a built-in model that answer differently, published as `export --keep-versions` does
(export.repository.publish), for the version, reload and update tests; and their expected outputs from a
plain onnxruntime session of each version's file (not through serve/)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from contract.publish import publish_dir, staging_dir
from export.repository import publish

MODEL = "auto-mpg"  # regression: version k answers the original prediction + 10·k mpg, unmistakably
VERSION_FIELDS = ("version", "sha256", "size_bytes", "created", "versions")


def shifted(onnx_bytes: bytes, offset: float, output: str = "prediction") -> bytes:
    """The same graph with `offset` added to `output` (its name, type and shape unchanged)."""
    model = onnx.load_from_string(onnx_bytes)
    for node in model.graph.node:
        node.output[:] = [f"{output}_unshifted" if o == output else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(offset, np.float32), "version_offset"))
    model.graph.node.append(helper.make_node("Add", [f"{output}_unshifted", "version_offset"], [output]))
    return model.SerializeToString()


def publish_version(
    repository: Path, onnx_bytes: bytes, name: str = MODEL, edit=None, breaking: list[str] = ()
) -> int:
    """Publish `onnx_bytes` as the next version of `name`, keeping the others; returns its number.
    `edit(manifest)` changes its manifest first; `breaking` is recorded as by export --allow-breaking."""
    manifest = json.loads((repository / name / "manifest.json").read_text())
    base = {k: v for k, v in manifest.items() if k not in VERSION_FIELDS}
    if edit is not None:
        edit(base)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        path.write_bytes(onnx_bytes)
        published = publish(repository, name, path, base, keep_versions=True, breaking=breaking)
    return int(published.parent.name)


def publish_corrupt_version(repository: Path, onnx_bytes: bytes, name: str = MODEL) -> int:
    """Publish the next version whose model.onnx no longer matches the sha256 in its manifest (as if
    damaged on disk), atomically like any publication; returns its number."""
    scratch = staging_dir(repository / name)  # hidden: never a model directory of its own
    try:
        shutil.copytree(repository / name, scratch / name, copy_function=os.link)
        version = publish_version(scratch, onnx_bytes, name)
        damaged = scratch / name / str(version) / "model.onnx"  # a fresh file, not a link to a kept one
        data = damaged.read_bytes()
        damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        publish_dir(scratch / name, repository / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return version


def outputs_of(onnx_bytes: bytes, rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": rows})))


def set_version_policy(repository: Path, policy: str, name: str = MODEL) -> None:
    config = repository / name / "config.pbtxt"
    lines = [line for line in config.read_text().splitlines() if not line.startswith("version_policy")]
    config.write_text("\n".join([*lines, policy]) + "\n")


def car_rows(n: int, seed: int = 0) -> np.ndarray:
    """Distinct, plausible auto-mpg feature rows."""
    rng = np.random.default_rng(seed)
    rows = rng.normal([5, 190, 100, 2900, 15, 76, 2], [1.5, 100, 35, 800, 3, 3, 0.8], (n, 7))
    rows[:, 6] = rng.integers(1, 4, n)
    return rows.astype(np.float32)
