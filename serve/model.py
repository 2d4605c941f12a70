"""The runtime model: one version of an exported model, built complete by `Model.load`, then `predict()`
as often as needed.

`Model.load(directory)` reads manifest.json and the version's model.onnx (serve.store; the newest version
by default, an older one kept by `--keep-versions` when asked for), checks the file's sha256 against the
manifest, opens one onnxruntime session from exactly the bytes it checked and checks the graph's inputs
and outputs against the manifest; anything wrong is a ModelLoadError and no model. `predict()` takes a
float32 feature matrix; `encode_rows()` turns rows of named (or ordered) raw values into that matrix with
the manifest's feature order and category codes; `describe()` turns outputs into class names and
probabilities, or named values. `schema` is what clients may know of it (contract.schema).

The input rule, for every way a client names features (V1 rows, V2 inputs per feature, batch prediction's
columns), is `encode_value` for one value and `encode_rows` for a row: a name that is not a feature is
ignored (the caller tells the client which), a feature not given is a missing value, a row that gives
no feature at all is refused, and a category matches its training text without surrounding spaces and
case (contract.features.category_code).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contract.errors import ContractError
from contract.features import category_code, category_lookup, is_missing
from contract.repository import INPUT_NAME, MANIFEST, MODEL_FILE, expected_sha256
from contract.schema import describe
from serve.errors import BadRequest, ModelLoadError
from serve.store import check_graph, read_version

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_TEXT = 4096  # characters of one text value in a request: no category or number is longer


class Model:
    def __init__(self, *, name: str, version: str, manifest: dict, session: ort.InferenceSession):
        """A model from a session already checked against its manifest (see `load`). A manifest that
        does not describe a model raises ModelLoadError, or KeyError, TypeError, IndexError, ValueError."""
        self.name, self.version = name, version
        self.manifest, self.session = manifest, session
        self.features: list[dict] = manifest["features"]  # in the graph's input order
        self.feature_index = {f["name"]: j for j, f in enumerate(self.features)}
        self.category_codes = [category_lookup(f["labels"], f["categories"]) for f in self.features]
        self.outputs: dict[str, dict] = {o["name"]: o for o in manifest["outputs"]}
        self.output_names = list(self.outputs)
        self.schema = describe(manifest)
        self.schema_json = json.dumps(self.schema, separators=(",", ":"))
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
        """Rows of raw values (dicts by feature name, or lists in feature order) → float32 matrix. Names
        that are not features are ignored (see `unknown_names`); a row that gives no feature is refused."""
        features = np.full((len(rows), self.n_features), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                items = [(self.feature_index[k], v) for k, v in row.items() if k in self.feature_index]
            elif isinstance(row, list):
                if len(row) != self.n_features:
                    raise BadRequest(
                        f"row {i}: {len(row)} values, model {self.name!r} takes {self.n_features}"
                    )
                items = list(enumerate(row))
            else:
                raise BadRequest(f"row {i}: expected an object of named features or a list of values")
            given = False
            for j, value in items:
                if isinstance(value, str) and len(value) > MAX_TEXT:
                    raise BadRequest(
                        f"row {i}: feature {self.features[j]['name']!r}: a text of {len(value)} characters "
                        f"(at most {MAX_TEXT})"
                    )
                features[i, j] = self.encode_value(j, value, i)
                given = given or not is_missing_value(value)
            if not given:
                raise self.nothing_given(i, self.unknown_names([row]))
        return features

    def unknown_names(self, rows: list) -> list[str]:
        """The names in rows of named features that are not features, in order of first appearance."""
        seen = dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row)
        return [k for k in seen if k not in self.feature_index]

    def nothing_given(self, row: int, ignored: list[str] = ()) -> BadRequest:
        """The refusal of a row that gives no feature (`ignored`: the names it gave that are not)."""
        hint = f" (ignored, not features: {', '.join(repr(n[:100]) for n in ignored[:5])})" if ignored else ""
        features = ", ".join(self.feature_index)
        return BadRequest(
            f"row {row}: every feature is missing{hint}; model {self.name!r} takes {features}"[:400]
        )

    def encode_value(self, j: int, value, row: int) -> float:
        """One raw value of feature j → what the graph takes: NaN for a missing value (None, or a
        missing-value token), a category's code for its text, a number as it is (a categorical
        feature's code); an unseen category is NaN too (all zeros in the one-hot)."""
        feature = self.features[j]
        if is_missing_value(value):
            return math.nan
        if isinstance(value, str) and feature["kind"] == "categorical":
            code = category_code(self.category_codes[j], value)
            if code is not None:
                return code
        try:
            number = float(value)
        except (TypeError, ValueError):
            if feature["kind"] == "categorical":
                return math.nan  # a category never seen in training encodes as all zeros
            raise BadRequest(
                f"row {row}: feature {feature['name']!r}: {value!r:.200} is not a number"
            ) from None
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


def is_missing_value(value) -> bool:
    """None, NaN, or a missing-value token (contract.features.MISSING)."""
    if value is None:
        return True
    if isinstance(value, str):
        return is_missing(value)
    return isinstance(value, float) and math.isnan(value)


def has_infinity(features: np.ndarray) -> bool:
    if features.size <= 64:
        # A numpy call right before session.run costs ~10 us more than it does alone (measured:
        # bench/inprocess.py); a plain loop over a few values does not.
        return any(math.isinf(v) for v in features.ravel().tolist())
    return bool(np.isinf(features).any())
