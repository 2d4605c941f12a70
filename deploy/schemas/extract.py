"""Turn a CustomResourceDefinition's OpenAPI v3 schema into a JSON Schema file for `jsonschema`, one file per
served version: deploy/schemas/<kind>-<group>-<version>.json (see README.md here for the pinned sources).

    python deploy/schemas/extract.py CRD.yaml --source "kserve/kserve v0.20.0 (commit ...) path"

What changes on the way, and why:
- `description`s are dropped (most of the bytes; no validation meaning);
- an object that lists its `properties` and neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`: the API server's strict field
  validation (kubectl's default) refuses unknown fields there, so a misspelt field is an error here too;
- `nullable: true` admits null; `x-kubernetes-int-or-string` admits an integer or a string;
- `apiVersion` and `kind` must be this CRD's, and both they and `metadata` are required;
- `metadata` (left open by CRDs: the API server checks it as ObjectMeta for every kind) gets ObjectMeta's
  everyday fields typed: name, namespace and generateName strings, labels and annotations maps of strings
  (an unquoted `true` as an annotation's value is refused by the API server, and here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {  # the fields of ObjectMeta that manifests set; others stay allowed, as the CRD has them
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "generateName": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}


def strict(schema):
    """A copy of an OpenAPI v3 schema node with the changes in the module docstring."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if k != "description"}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if out.pop("nullable", False) and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        out["additionalProperties"] = False
    return out


def extract(crd: dict, source: str, digest: str) -> dict[str, dict]:
    """file name → JSON Schema, for each served version of `crd`."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    files = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        api_version = f"{group}/{version['name']}"
        schema["properties"]["apiVersion"] = {"const": api_version}
        schema["properties"]["kind"] = {"const": kind}
        schema["properties"]["metadata"] = OBJECT_META
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        files[f"{kind.lower()}-{group}-{version['name']}.json"] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"{kind} {api_version} from {source} (sha256 {digest}), by deploy/schemas/extract.py",
            **schema,
        }
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("crd", type=Path, help="a CRD manifest (YAML)")
    parser.add_argument(
        "--source", required=True, help="where it came from: repository, release, commit, path"
    )
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    raw = args.crd.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    crds = [d for d in yaml.safe_load_all(raw) if d and d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        print(f"error: {args.crd} holds no CustomResourceDefinition", file=sys.stderr)
        return 2
    for crd in crds:
        for name, schema in extract(crd, args.source, digest).items():
            (args.out / name).write_text(json.dumps(schema, indent=0, sort_keys=True) + "\n")
            print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
