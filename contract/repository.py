"""The model repository (Triton's layout), as every side reads and writes it.

```
<repository>/<model-name>/config.pbtxt      Triton ModelConfig
<repository>/<model-name>/manifest.json     this project's metadata (task, features, sha256, ...)
<repository>/<model-name>/<version>/model.onnx
```

A model name is `[A-Za-z0-9_.-]+`, at most 255 characters (a directory name's limit), and never hidden
(`.`, `..` and staging directories start with a dot); a version directory is a positive number in ASCII
digits without leading zeros, as Triton's. The graph takes one FP32 input, `features`
`[batch, n_features]`, and returns the outputs of its task's row below.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from contract.errors import ContractError

MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NAME_LENGTH = 255  # a directory name's limit on Linux filesystems (NAME_MAX)
VERSION_NAME = re.compile(r"[1-9][0-9]{0,17}")  # ASCII only (str.isdigit also accepts '²' and '١٢')
MANIFEST = "manifest.json"
CONFIG = "config.pbtxt"
MODEL_FILE = "model.onnx"
PLATFORM = "onnxruntime_onnx"  # config.pbtxt's platform, and the V2 metadata's
MAX_BATCH_SIZE = 4096  # config.pbtxt's max_batch_size

INPUT_NAME = "features"
TASKS = ("binary", "multiclass", "regression")
CLASSIFIERS = ("binary", "multiclass")
TASK_OUTPUTS = {  # graph outputs per task, in the order the graph returns them
    "binary": ("logits", "probabilities", "label"),
    "multiclass": ("logits", "probabilities", "label"),
    "regression": ("prediction",),
}
OUTPUT_DATATYPES = {"logits": "FP32", "probabilities": "FP32", "label": "INT64", "prediction": "FP32"}
NUMPY_DATATYPES = {"float32": "FP32", "int64": "INT64"}  # numpy dtype name → Open Inference Protocol
TRITON_DATATYPES = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}  # → model_config.proto's DataType


def is_model_name(name: str) -> bool:
    """A model directory's name: [A-Za-z0-9_.-]+, not hidden (staging directories, `.`, `..`), at most
    MAX_NAME_LENGTH characters."""
    return len(name) <= MAX_NAME_LENGTH and bool(MODEL_NAME.fullmatch(name)) and not name.startswith(".")


def check_model_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise ContractError(f"model name of {len(name):,} characters is over the limit of {MAX_NAME_LENGTH}")
    if not MODEL_NAME.fullmatch(name):
        raise ContractError(f"model name {name!r} must match [A-Za-z0-9_.-]+")
    return name


def version_number(name: str) -> int | None:
    """The version a directory name stands for, or None when it is not a version directory."""
    return int(name) if VERSION_NAME.fullmatch(name) else None


def published_versions(directory: Path) -> list[int]:
    """The versions of a model directory that hold a model.onnx, in increasing order."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    versions = (version_number(e.name) for e in entries if os.path.isfile(f"{e.path}/{MODEL_FILE}"))
    return sorted(v for v in versions if v is not None)


def read_manifest(directory: Path) -> dict:
    """manifest.json as a dict; ContractError (with `missing` set when there is none) otherwise."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text())
    except FileNotFoundError:
        raise ManifestMissing(f"missing {MANIFEST}") from None
    except OSError as exc:
        raise ContractError(f"cannot read {MANIFEST}: {exc.strerror}") from None
    except ValueError as exc:
        raise ContractError(f"{MANIFEST} is not valid: {exc!r}") from None
    if not isinstance(manifest, dict):
        raise ContractError(f"{MANIFEST} is not valid: not an object")
    return manifest


class ManifestMissing(ContractError):
    """The model directory has no manifest.json (not exported yet)."""


def expected_sha256(manifest: dict, version: int) -> str | None:
    """The sha256 manifest.json records for `version`: its own for the newest, else from "versions"."""
    if str(version) == str(manifest.get("version")):
        return manifest.get("sha256")
    recorded = manifest.get("versions")
    entry = recorded.get(str(version)) if isinstance(recorded, dict) else None
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ContractError(f"{MANIFEST} records no sha256 for version {version}")
    return entry["sha256"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_spec(name: str, datatype: str, shape: list[int]) -> dict:
    """A tensor as manifest.json and the V2 metadata give it: the batch axis is -1 in `shape`."""
    return {"name": name, "datatype": datatype, "shape": shape}
