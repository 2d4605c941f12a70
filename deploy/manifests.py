"""The Kubernetes manifests in deploy/kubernetes/, read and validated against their own schemas: core kinds
with kubernetes-validate at a pinned Kubernetes version (strict: unknown fields are errors, as kubectl's
server-side field validation makes them), custom kinds (KServe, Kubeflow) against the JSON Schemas taken
from their CRDs at a pinned release (deploy/schemas/, README.md there).

Needs PyYAML, jsonschema and kubernetes-validate (the `dev` extra); `python -m deploy validate` runs it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_VERSION = "1.33.0"  # the core kinds' schemas (kubernetes-validate bundles one per release)
CUSTOM_GROUPS = ("serving.kserve.io", "kubeflow.org")  # validated against deploy/schemas/


def documents(directory: Path = MANIFESTS) -> list[tuple[Path, dict]]:
    """(file, document) for every non-empty YAML document in the directory's *.yaml files, in order."""
    import yaml

    return [
        (path, doc)
        for path in sorted(Path(directory).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def describe(doc: dict) -> str:
    return f"{doc.get('kind')} {doc.get('metadata', {}).get('name')} ({doc.get('apiVersion')})"


def custom_schema_path(doc: dict) -> Path | None:
    """The JSON Schema file for a custom kind (None for core kinds)."""
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    if group not in CUSTOM_GROUPS:
        return None
    return SCHEMAS / f"{str(doc.get('kind', '')).lower()}-{group}-{version}.json"


@cache
def custom_validator(path: Path):
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


def schema_errors(doc: dict) -> list[str]:
    """What is wrong with `doc` against its kind's schema, one line each ([] when it validates)."""
    path = custom_schema_path(doc)
    if path is not None:
        if not path.is_file():
            return [f"no schema for {describe(doc)}: expected {path.relative_to(ROOT)}"]
        errors = sorted(
            custom_validator(path).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))
        )
        return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
    from kubernetes_validate import utils

    try:
        utils.validate(doc, KUBERNETES_VERSION, strict=True)
    except utils.ValidationError as e:
        return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"]
    except utils.SchemaNotFoundError as e:
        return [e.message]
    return []


def serving_containers(docs: list[tuple[Path, dict]]) -> list[tuple[str, dict, dict, dict, list]]:
    """(where, container, pod security context, pod annotations, pod volumes) of every container that runs
    the serving image: the Deployment's and the ClusterServingRuntime's."""
    found = []
    for path, doc in docs:
        where = f"{path.name}:{doc['kind']}:{doc['metadata']['name']}"
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]
            security, annotations = (
                pod["spec"].get("securityContext", {}),
                pod["metadata"].get("annotations", {}),
            )
            containers, volumes = pod["spec"]["containers"], pod["spec"].get("volumes", [])
        elif doc["kind"] == "ClusterServingRuntime":
            security, annotations = {}, doc["spec"].get("annotations", {})
            containers, volumes = doc["spec"]["containers"], doc["spec"].get("volumes", [])
        else:
            continue
        found += [(where, c, security, annotations, volumes) for c in containers]
    return found


def validate_all(directory: Path = MANIFESTS, log=print) -> int:
    """Validate every manifest; prints one line per document or error; the number of invalid documents."""
    invalid = 0
    for path, doc in documents(directory):
        errors = schema_errors(doc)
        invalid += bool(errors)
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {describe(doc)}"
        log(f"{'ok' if not errors else 'INVALID'} {where}")
        for error in errors:
            log(f"    {error}")
    return invalid
