"""The runtime model: one exported model directory, `load()` once, then `predict()` many times.

`load()` reads manifest.json, checks the sha256 of the version's model.onnx against it (the newest
version by default; an older one kept by `--keep-versions` against the manifest's "versions" record),
opens one onnxruntime session from exactly the bytes it checked, and checks the graph's inputs and
outputs against the manifest before setting `ready`. `predict()` takes a float32 feature matrix;
`encode_rows()` turns rows of named (or ordered) raw values into that matrix with the manifest's feature
order and category codes; `describe()` turns outputs into class names and probabilities, or named values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serve.errors import BadRequest, ModelLoadError

INPUT_NAME = "features"
ORT_TYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64"}
FLOAT32_MAX = float(np.finfo(np.float32).max)
MISSING = {"", "na", "nan", "n/a", "?", "null", "none"}  # text cells that mean "missing" (lower-cased)


class Model:
    def __init__(self, directory: Path, threads: int = 1, version: int | None = None):
        self.directory = Path(directory)
        self.name = self.directory.name
        self.threads = threads  # onnxruntime intra-op threads; 1 suits these small graphs best
        self.requested = version  # the version to load; None: the newest published (manifest.json's)
        self.ready = False
        self.session: ort.InferenceSession | None = None
        self.manifest: dict = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> Model:
        manifest, version, blob = read_version(self.directory, self.requested)
        if hashlib.sha256(blob).hexdigest() != expected_sha256(manifest, version):
            raise ModelLoadError(
                f"{version}/model.onnx does not match the sha256 in manifest.json "
                "(changed or corrupted on disk)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelLoadError(
                f"onnxruntime refused {version}/model.onnx: {str(exc).splitlines()[0]}"
            ) from None
        try:
            check_graph(session, manifest)
            self.features = manifest["features"]
            self.feature_index = {f["name"]: j for j, f in enumerate(self.features)}
            self.category_codes = [dict(zip(f["labels"], f["categories"])) for f in self.features]
            self.outputs = {o["name"]: o for o in manifest["outputs"]}
            if len(self.features) != manifest["inputs"][0]["shape"][1]:
                raise ModelLoadError("manifest.json features do not match the input width")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelLoadError(f"manifest.json is not valid: {exc!r}") from None
        self.manifest, self.session, self.version = manifest, session, str(version)
        self.output_names = list(self.outputs)
        self.ready = True
        return self

    # -- inference ---------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.features)

    def check_features(self, features: np.ndarray) -> np.ndarray:
        """A (rows, n_features) float32 matrix, or BadRequest. NaN means missing; ±Inf is refused."""
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise BadRequest(
                f"model {self.name!r} takes shape [rows, {self.n_features}], got {list(features.shape)}"
            )
        if features.dtype != np.float32:
            raise BadRequest(f"features must be FP32, got {features.dtype}")
        if has_infinity(features):
            raise BadRequest("features contain ±Infinity; send NaN (or null) for a missing value")
        return features

    def run(self, features: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run checked features through the session (no validation: see `predict`)."""
        names = outputs or self.output_names
        return dict(zip(names, self.session.run(names, {INPUT_NAME: features})))

    def predict(self, features: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.run(self.check_features(features), outputs)

    # -- named features in, named results out ------------------------------------------------------
    def encode_rows(self, rows: list) -> np.ndarray:
        """Rows of raw values (dicts by feature name, or lists in feature order) → float32 matrix."""
        features = np.full((len(rows), self.n_features), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                unknown = [k for k in row if k not in self.feature_index]
                if unknown:
                    raise BadRequest(
                        f"row {i}: unknown feature name(s) {', '.join(map(repr, unknown[:5]))}; "
                        f"model {self.name!r} takes {', '.join(self.feature_index)}"
                    )
                items = [(self.feature_index[k], v) for k, v in row.items()]
            elif isinstance(row, list):
                if len(row) != self.n_features:
                    raise BadRequest(
                        f"row {i}: {len(row)} values, model {self.name!r} takes {self.n_features}"
                    )
                items = list(enumerate(row))
            else:
                raise BadRequest(f"row {i}: expected an object of named features or a list of values")
            for j, value in items:
                features[i, j] = self.encode_value(j, value, i)
        return features

    def encode_value(self, j: int, value, row: int) -> float:
        feature = self.features[j]
        if value is None or (isinstance(value, str) and value.strip().lower() in MISSING):
            return math.nan
        if isinstance(value, str) and feature["kind"] == "categorical":
            code = self.category_codes[j].get(value.strip())
            if code is not None:
                return code
        try:
            number = float(value)
        except (TypeError, ValueError):
            if feature["kind"] == "categorical":
                return math.nan  # a category never seen in training encodes as all zeros
            raise BadRequest(f"row {row}: feature {feature['name']!r}: {value!r} is not a number") from None
        if math.isinf(number) or abs(number) > FLOAT32_MAX:
            raise BadRequest(f"row {row}: feature {feature['name']!r} is infinite or beyond the FP32 range")
        return number

    def describe(self, outputs: dict[str, np.ndarray]) -> list[dict]:
        """Per row: {"label": class name, "probabilities": {class: p}} or {target: value}."""
        if "prediction" in outputs:
            names = self.manifest["target_names"]
            return [dict(zip(names, map(float, row))) for row in outputs["prediction"]]
        classes = self.manifest["class_names"]
        probabilities = outputs["probabilities"]
        if probabilities.shape[1] == 1:  # binary: p is the positive class's probability
            probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
        return [
            {"label": classes[int(label)], "probabilities": dict(zip(classes, map(float, p)))}
            for label, p in zip(outputs["label"], probabilities)
        ]


def read_version(directory: Path, version: int | None) -> tuple[dict, int, bytes]:
    """manifest.json and <version>/model.onnx, both read from one and the same model directory.

    A publication swaps the whole directory at once (renameat2, pipeline/files.py), and the old one is
    deleted right after: reading both files through one open handle of the directory never mixes two
    publications, and a read that loses the old directory's files mid-way starts over on the new one."""
    for attempt in range(3):
        try:
            handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise ModelLoadError(f"cannot open the model directory: {exc.strerror}") from None
        try:
            manifest = json.loads(read_at(handle, "manifest.json"))
            number = int(manifest["version"]) if version is None else version
            return manifest, number, read_at(handle, f"{number}/model.onnx")
        except FileNotFoundError as exc:
            if attempt < 2 and swapped(directory, handle):
                continue
            raise ModelLoadError(f"missing {exc.filename}") from None
        except OSError as exc:
            raise ModelLoadError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"manifest.json is not valid: {exc!r}") from None
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


def expected_sha256(manifest: dict, version: int) -> str | None:
    """The sha256 manifest.json records for `version`: its own for the newest, else from "versions"."""
    if str(version) == str(manifest.get("version")):
        return manifest.get("sha256")
    recorded = manifest.get("versions")
    entry = recorded.get(str(version)) if isinstance(recorded, dict) else None
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ModelLoadError(f"manifest.json records no sha256 for version {version}")
    return entry["sha256"]


def check_graph(session: ort.InferenceSession, manifest: dict) -> None:
    """The graph's inputs and outputs must be the manifest's: names, datatypes, shapes."""

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
            raise ModelLoadError(f"graph {side} {actual} do not match manifest.json {declared}")
    if [i["name"] for i in manifest["inputs"]] != [INPUT_NAME]:
        raise ModelLoadError(f"expected one input named {INPUT_NAME!r}")


def has_infinity(features: np.ndarray) -> bool:
    if features.size <= 64:
        # A numpy call right before session.run costs ~10 us more than it does alone (measured:
        # bench/inprocess.py); a plain loop over a few values does not.
        return any(math.isinf(v) for v in features.ravel().tolist())
    return bool(np.isinf(features).any())
