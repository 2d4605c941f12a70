"""Reading one model directory from disk, as the runtime serves it (the format's rules are contract/'s).

`read_version` reads manifest.json and one version's model.onnx through one handle of the directory, so
the two always come from the same publication; `check_graph` holds an onnxruntime session's inputs and
outputs against the manifest; `read_policy` reads config.pbtxt's version_policy, and `read_config` the
whole of it as Triton's ModelConfig. `signature`,
`identity` and `version_key` are what the repository poll compares to see that something moved on disk
without reading it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from contract.errors import ContractError
from contract.repository import CONFIG, INPUT_NAME, MANIFEST, MODEL_FILE, expected_sha256, published_versions
from serve.errors import ModelLoadError
from serve.policy import PolicyError, VersionPolicy, version_policy
from serve.triton import ConfigError, parse_config

ORT_TYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64"}  # onnxruntime type → Open Inference Protocol


def read_version(directory: Path, version: int | None) -> tuple[dict, int, bytes]:
    """manifest.json and <version>/model.onnx (the manifest's own version when None), both read from
    one and the same model directory.

    A publication swaps the whole directory at once (renameat2, contract/publish.py), and the old one is
    deleted right after: reading both files through one open handle of the directory never mixes two
    publications, and a read that loses the old directory's files mid-way starts over on the new one."""
    for attempt in range(3):
        try:
            handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise ModelLoadError(f"cannot open the model directory: {exc.strerror}") from None
        try:
            manifest = json.loads(read_at(handle, MANIFEST))
            number = int(manifest["version"]) if version is None else version
            return manifest, number, read_at(handle, f"{number}/{MODEL_FILE}")
        except FileNotFoundError as exc:
            if attempt < 2 and swapped(directory, handle):
                continue
            raise ModelLoadError(f"missing {exc.filename}") from None
        except OSError as exc:
            raise ModelLoadError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{MANIFEST} is not valid: {exc!r}") from None
        finally:
            os.close(handle)
    raise ModelLoadError("the model directory kept changing while it was read")


def read_at(directory_handle: int, relative: str) -> bytes:
    try:
        fd = os.open(relative, os.O_RDONLY, dir_fd=directory_handle)
    except OSError as exc:
        exc.filename = relative
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def swapped(directory: Path, handle: int) -> bool:
    try:
        return os.stat(directory).st_ino != os.fstat(handle).st_ino
    except FileNotFoundError:
        return True


def check_graph(session, manifest: dict) -> None:
    """The graph's inputs and outputs (an onnxruntime session's) must be the manifest's: names,
    datatypes, shapes."""

    def specs(values):
        return [
            {
                "name": v.name,
                "datatype": ORT_TYPES.get(v.type, v.type),
                "shape": [d if isinstance(d, int) else -1 for d in v.shape],
            }
            for v in values
        ]

    for side, actual in (("inputs", specs(session.get_inputs())), ("outputs", specs(session.get_outputs()))):
        declared = [{k: t[k] for k in ("name", "datatype", "shape")} for t in manifest.get(side, [])]
        if actual != declared:
            raise ModelLoadError(f"graph {side} {actual} do not match {MANIFEST} {declared}")
    if [i["name"] for i in manifest["inputs"]] != [INPUT_NAME]:
        raise ModelLoadError(f"expected one input named {INPUT_NAME!r}")


def read_policy(directory: Path) -> VersionPolicy:
    """config.pbtxt's version_policy (Triton's default, the latest version, without one)."""
    try:
        text = (directory / CONFIG).read_text()
    except FileNotFoundError:
        return VersionPolicy()
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {CONFIG}: {exc}") from None
    return version_policy(text)


def read_config(directory: Path):
    """config.pbtxt as Triton's ModelConfig message (None without one); ConfigError when it is not one."""
    try:
        text = (directory / CONFIG).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {CONFIG}: {exc}") from None
    return parse_config(text)


def signature(directory: Path) -> tuple | None:
    """What a publication or an edit changes: the directory itself (a publication swaps it whole), its
    manifest and config, and each version's model.onnx. None when the directory is gone."""
    try:
        top = os.stat(directory)
    except FileNotFoundError:
        return None
    parts = [(top.st_ino, top.st_mtime_ns)]
    parts += [(name, identity(directory / name)) for name in (MANIFEST, CONFIG)]
    parts += [(str(v), identity(directory / str(v) / MODEL_FILE)) for v in published_versions(directory)]
    return tuple(parts)


def identity(path: Path) -> tuple | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def version_key(directory: Path, manifest: dict, version: int) -> tuple:
    """(version, the sha256 recorded for it, its model.onnx's identity): a version whose key is unchanged
    need not be read again."""
    try:
        recorded = expected_sha256(manifest, version)
    except ContractError:
        recorded = None
    return version, recorded, identity(directory / str(version) / MODEL_FILE)
