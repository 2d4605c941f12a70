"""The model repository (Triton layout): config.pbtxt, manifest.json and <version>/model.onnx per model.

A version is built completely in a hidden staging directory beside the model's directory, verified there,
and only then swapped into place, so an interrupted or failed export never changes what is published.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from contract.errors import ContractError
from contract.publish import publish_dir, remove_stale_staging, staging_dir
from contract.repository import (
    CONFIG,
    MANIFEST,
    MAX_BATCH_SIZE,
    MODEL_FILE,
    PLATFORM,
    TRITON_DATATYPES,
    ManifestMissing,
    check_model_name,
    published_versions,
    sha256_of,
)
from contract.repository import read_manifest as read_manifest_file
from contract.schema import BREAKING
from pipeline.errors import PipelineError


def model_dir(repository: Path, name: str) -> Path:
    try:
        return repository / check_model_name(name)
    except ContractError as exc:
        raise PipelineError(str(exc)) from None


DEFAULT_VERSION_POLICY = "version_policy: { latest: { num_versions: 1 } }"


def config_pbtxt(
    name: str, inputs: list[dict], outputs: list[dict], version_policy: str = DEFAULT_VERSION_POLICY
) -> str:
    """Triton ModelConfig in protobuf text format. A batch-only tensor ([batch]) is declared the Triton
    way: dims [ 1 ] reshaped to [ ]."""

    def tensor(spec: dict) -> str:
        dims = spec["shape"][1:]
        lines = [f'    name: "{spec["name"]}"', f"    data_type: {TRITON_DATATYPES[spec['datatype']]}"]
        if dims:
            lines.append(f"    dims: [ {', '.join(map(str, dims))} ]")
        else:
            lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
        return "  {\n" + "\n".join(lines) + "\n  }"

    separator = ",\n"
    return (
        f'name: "{name}"\nplatform: "{PLATFORM}"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        f"input [\n{separator.join(tensor(s) for s in inputs)}\n]\n"
        f"output [\n{separator.join(tensor(s) for s in outputs)}\n]\n"
        "dynamic_batching { }\n"
        f"{version_policy}\n"
    )


def version_policy_clause(config: str) -> str | None:
    """The top-level `version_policy` clause of a config.pbtxt, verbatim (None when there is none)."""
    match = re.search(r"^version_policy\s*:?\s*[{<]", config, re.M)
    if not match:
        return None
    depth = 0
    for end in range(match.end() - 1, len(config)):
        depth += {"{": 1, "<": 1, "}": -1, ">": -1}.get(config[end], 0)
        if depth == 0:
            return config[match.start() : end + 1]
    return None


def publish(
    repository: Path,
    name: str,
    onnx_file: Path,
    manifest: dict,
    keep_versions: bool,
    breaking: list[str] = (),
) -> Path:
    """Publish `onnx_file` as the next version (or as version 1, replacing all, without
    `keep_versions`), with its manifest and config. Returns the published model.onnx path. With
    `keep_versions`, the config keeps the version_policy an operator may have set (latest N, all,
    specific: which of the kept versions the server serves); a fresh version 1 gets the default.
    `breaking`: what this version breaks of the schema served before, when published anyway; recorded
    in the manifest, where the server reads that the break is allowed (contract.schema)."""
    directory = model_dir(repository, name)
    remove_stale_staging(directory)
    staged = staging_dir(directory)
    try:
        older = published_versions(directory) if keep_versions else []
        version = (older[-1] + 1) if older else 1
        for v in older:  # hard links: the kept versions cost no copy and stay byte-identical
            shutil.copytree(directory / str(v), staged / str(v), copy_function=os.link)
        (staged / str(version)).mkdir()
        target = staged / str(version) / MODEL_FILE
        shutil.copyfile(onnx_file, target)
        previous = read_manifest(directory) if older else {}
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = {
            **manifest,
            "version": version,
            "sha256": sha256_of(target),
            "size_bytes": target.stat().st_size,
            "created": created,
        }
        kept = {k: v for k, v in previous.get("versions", {}).items() if int(k) in older}
        entry = {"sha256": manifest["sha256"], "created": created}
        if breaking:
            entry[BREAKING] = list(breaking)
        manifest["versions"] = {**kept, str(version): entry}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        policy = version_policy_clause(read_config(directory)) if older else None
        config = config_pbtxt(name, manifest["inputs"], manifest["outputs"], policy or DEFAULT_VERSION_POLICY)
        (staged / CONFIG).write_text(config)
        for path in staged.rglob("*"):
            if path.is_file():
                with path.open("rb") as f:
                    os.fsync(f.fileno())
        publish_dir(staged, directory)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return directory / str(version) / MODEL_FILE


def read_config(directory: Path) -> str:
    try:
        return (directory / CONFIG).read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def read_manifest(directory: Path) -> dict:
    try:
        return read_manifest_file(directory)
    except ManifestMissing:
        raise PipelineError(f"no {MANIFEST} in {directory}: export the model first") from None
    except ContractError as exc:
        raise PipelineError(f"{directory}: {exc}") from None
