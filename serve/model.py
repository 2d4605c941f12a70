"""The runtime model: one version of an exported model, built complete by `Model.load`, then `predict()`
as often as needed.

`Model.load(directory)` reads manifest.json and the version's model.onnx (serve.store; the newest version
by default, an older one kept by `--keep-versions` when asked for), checks the file's sha256 against the
manifest, opens one onnxruntime session from exactly the bytes it checked and checks the graph's inputs
and outputs against the manifest; anything wrong is a ModelLoadError and no model. `predict()` takes a
float32 feature matrix; `encode_rows()` turns rows of named (or ordered) raw values into that matrix with
the manifest's feature order and category codes (a date's ISO text and a boolean's yes / no through
`serve.values`); `describe()` turns outputs into class names and probabilities, or named values.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contract.errors import ContractError
from contract.features import is_missing
from contract.repository import INPUT_NAME, MANIFEST, MODEL_FILE, expected_sha256
from serve.errors import BadRequest, ModelLoadError
from serve.store import check_graph, read_version
from serve.values import converted

FLOAT32_MAX = float(np.finfo(np.float32).max)


class Model:
    def __init__(self, *, name: str, version: str, manifest: dict, session: ort.InferenceSession):
        """A model from a session already checked against its manifest (see `load`). A manifest that
        does not describe a model raises ModelLoadError, or KeyError, TypeError, IndexError, ValueError."""
        self.name, self.version = name, version
        self.manifest, self.session = manifest, session
        self.features: list[dict] = manifest["features"]  # in the graph's input order
        self.feature_index = {f["name"]: j for j, f in enumerate(self.features)}
        self.category_codes = [dict(zip(f["labels"], f["categories"])) for f in self.features]
        self.outputs: dict[str, dict] = {o["name"]: o for o in manifest["outputs"]}
        self.output_names = list(self.outputs)
        if len(self.features) != manifest["inputs"][0]["shape"][1]:
            raise ModelLoadError(f"{MANIFEST} features do not match the input width")

    @classmethod
    def load(cls, directory: Path | str, threads: int = 1, version: int | None = None) -> Model:
        """Version `version` of the model in `directory` (None: the newest published, manifest.json's),
        verified; `threads` onnxruntime intra-op threads (1 suits these small graphs best)."""
        directory = Path(directory)
        manifest, number, blob = read_version(directory, version)
        try:
            expected = expected_sha256(manifest, number)
        except ContractError as exc:
            raise ModelLoadError(str(exc)) from None
        if hashlib.sha256(blob).hexdigest() != expected:
            raise ModelLoadError(
                f"{number}/{MODEL_FILE} does not match the sha256 in {MANIFEST} "
                "(changed or corrupted on disk)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelLoadError(
                f"onnxruntime refused {number}/{MODEL_FILE}: {str(exc).splitlines()[0]}"
            ) from None
        try:
            check_graph(session, manifest)
            return cls(name=directory.name, version=str(number), manifest=manifest, session=session)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelLoadError(f"{MANIFEST} is not valid: {exc!r}") from None

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
        if value is None or (isinstance(value, str) and is_missing(value)):
            return math.nan
        try:
            special = converted(feature["kind"], value)  # a date's ISO text, a boolean's yes / no
        except ValueError as exc:
            raise BadRequest(f"row {row}: feature {feature['name']!r}: {exc}") from None
        if special is not None:
            return special
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


def has_infinity(features: np.ndarray) -> bool:
    if features.size <= 64:
        # A numpy call right before session.run costs ~10 us more than it does alone (measured:
        # bench/inprocess.py); a plain loop over a few values does not.
        return any(math.isinf(v) for v in features.ravel().tolist())
    return bool(np.isinf(features).any())
