"""A model's contract with its clients: what they can discover about its inputs and outputs, and which
changes to it break them.

`describe(manifest)` is the input schema every side shows: the features in the graph's order with their
kind (a categorical feature with its categories and the code each stands for), the class or target names
and what each output means. The server gives it in the V2 metadata's and the model configuration's
`parameters` (as JSON text under "schema") and in the V1 metadata; `export` compares it with the
published model's before it publishes.

`breaking_changes(served, new)` is the one compatibility rule, for export and the server alike: a client
built against `served` still works against `new` when the features keep their names, order and kinds,
every category keeps its code, and the classes (or targets) and the task stay as they were. New category
values are compatible: clients that never send them see no change. Anything else is listed, one phrase
per change. A version published with `--allow-breaking` records what it breaks in manifest.json
("versions" → "<version>" → "breaking"), which `breaking_allowed` reads.
"""

from __future__ import annotations

from contract.features import MISSING
from contract.repository import INPUT_NAME, TASK_OUTPUTS, version_number

SCHEMA_PARAMETER = "schema"  # the key of the schema's JSON text in metadata and config parameters
BREAKING = "breaking"  # manifest.json: versions → <version> → what it breaks, when published anyway
INPUTS = (
    f"either '{INPUT_NAME}' [rows, n_features] of numbers (FP32; a category as its code, NaN for missing), "
    "or one input per feature, named after it, shape [rows] or [rows, 1]: BYTES (text: a category's name, "
    "a number, a missing-value token) or a numeric type (a category as its code)"
)


def describe(manifest: dict) -> dict:
    """The input schema of the model a manifest describes (see the module's docstring)."""
    task = manifest["task"]
    schema = {
        "task": task,
        "inputs": INPUTS,
        "features": [feature_entry(f) for f in manifest["features"]],
        "missing_values": sorted(MISSING),
    }
    if task == "regression":
        schema["targets"] = list(manifest["target_names"])
    else:
        schema["classes"] = list(manifest["class_names"])
    if task == "binary":
        schema["threshold"] = manifest["threshold"]
    schema["outputs"] = output_meanings(schema, len(manifest["features"]))
    return schema


def feature_entry(feature: dict) -> dict:
    entry = {"name": feature["name"], "kind": feature["kind"]}
    if feature["kind"] == "categorical":
        entry["categories"] = list(feature["labels"])
        entry["codes"] = [int(c) if float(c).is_integer() else c for c in feature["categories"]]
    return entry


def output_meanings(schema: dict, n_features: int) -> dict[str, str]:
    """What each graph output holds, in words, per task (the graph's outputs: contract.repository)."""
    task = schema["task"]
    if task == "regression":
        targets = schema["targets"]
        return {"prediction": f"[rows, {len(targets)}] predicted {', '.join(targets)}, in the target's units"}
    classes = schema["classes"]
    if task == "binary":
        positive = classes[1]
        meanings = {
            "logits": f"[rows, 1] score of class {positive!r} before the sigmoid",
            "probabilities": f"[rows, 1] probability of class {positive!r} (classes[1])",
            "label": f"[rows] index into classes: 1 when the probability is at least {schema['threshold']}",
        }
    else:
        width = len(classes)
        meanings = {
            "logits": f"[rows, {width}] score of each class, in the order of classes, before the softmax",
            "probabilities": f"[rows, {width}] probability of each class, in the order of classes",
            "label": "[rows] index into classes of the most probable class",
        }
    return {name: meanings[name] for name in TASK_OUTPUTS[task]}


def breaking_changes(served: dict, new: dict) -> list[str]:
    """What breaks for a client of schema `served` when the model becomes `new` ([] when nothing does)."""
    changes = []
    if served["task"] != new["task"]:
        changes.append(f"the task changes from {served['task']} to {new['task']}")
    before = {f["name"]: f for f in served["features"]}
    after = {f["name"]: f for f in new["features"]}
    removed = [n for n in before if n not in after]
    added = [n for n in after if n not in before]
    if removed:
        changes.append(f"feature(s) removed: {names(removed)}")
    if added:
        changes.append(f"feature(s) added: {names(added)}")
    kept_before = [n for n in before if n in after]
    kept_after = [n for n in after if n in before]
    if kept_before != kept_after:
        changes.append(f"features reordered: {names(kept_before)} → {names(kept_after)}")
    for name in kept_before:
        changes += feature_changes(before[name], after[name])
    for key in ("classes", "targets"):
        if served.get(key) != new.get(key) and served["task"] == new["task"]:
            changes.append(f"{key} change from {served.get(key)} to {new.get(key)}")
    return changes


def feature_changes(before: dict, after: dict) -> list[str]:
    name = before["name"]
    if before["kind"] != after["kind"]:
        return [f"feature {name!r} changes from {before['kind']} to {after['kind']}"]
    if before["kind"] != "categorical":
        return []
    old = dict(zip(before["categories"], before["codes"]))
    new = dict(zip(after["categories"], after["codes"]))
    changes = []
    lost = [c for c in old if c not in new]
    if lost:
        changes.append(f"feature {name!r} loses categories {names(lost)}")
    moved = [c for c in old if c in new and new[c] != old[c]]
    if moved:
        codes = ", ".join(f"{c!r} {old[c]} → {new[c]}" for c in moved[:5])
        changes.append(f"feature {name!r} recodes categories ({codes}{', ...' if len(moved) > 5 else ''})")
    return changes


def names(values: list, limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def breaking_allowed(manifest: dict, served_version: int, version: int) -> bool:
    """Whether manifest.json lets `version` replace `served_version` although its schema breaks: some
    version published since (or `version` itself, when it replaced the served one under the same
    number) was exported with --allow-breaking."""
    recorded = manifest.get("versions")
    if not isinstance(recorded, dict):
        return False
    for number, entry in recorded.items():
        number = version_number(str(number))
        if number is None or not (isinstance(entry, dict) and entry.get(BREAKING)):
            continue
        if served_version < number <= version or number == version:
            return True
    return False
