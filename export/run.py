"""Export one trained run into the model repository: schema check → ONNX → verification → manifest →
publication. A run whose input schema breaks the one published under its name (contract.schema) is
refused before anything is exported, unless `allow_breaking`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import onnxscript
import torch

from contract.repository import MANIFEST, MODEL_FILE, OUTPUT_DATATYPES, PLATFORM, sha256_of, tensor_spec
from contract.schema import breaking_changes, describe
from export.onnx import OPSET, export_onnx, graph_metadata
from export.repository import model_dir, publish, read_manifest
from export.verify import BackendResult, VerificationError, parity_table, verify
from pipeline.checks import parity
from pipeline.display import text_table
from pipeline.errors import PipelineError
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.report import read_json


def producer_versions() -> dict:
    return {
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": onnxscript.__version__,
        "numpy": np.__version__,
    }


def graph_io(path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of the ONNX graph as tensor specs (symbolic axes as -1)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(value, datatype):
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        return tensor_spec(value.name, datatype, dims)

    inputs = [spec(v, "FP32") for v in graph.input]
    outputs = [spec(v, OUTPUT_DATATYPES[v.name]) for v in graph.output]
    return inputs, outputs


def compile_result(run_dir: Path) -> list[BackendResult]:
    """The torch.compile stage's parity (same rows and rule), when that stage ran."""
    report = read_json(run_dir / "report.json").get("compile")
    if report is None:
        return [
            BackendResult(
                backend="torch.compile",
                status="skipped",
                reason="compile stage not run (python -m pipeline compile)",
            )
        ]
    diffs = [parity.OutputDiff(**{k: v for k, v in d.items() if k != "passed"}) for d in report["parity"]]
    return [BackendResult(backend="torch.compile", status="passed", outputs=diffs)]


def schema_changes(repository: Path, name: str, contract: dict, allow_breaking: bool, log=print) -> list[str]:
    """What the run's input schema (`contract`: the manifest's task, features, class and target names,
    threshold) breaks of the model published as `name` ([] for a new name). A break is refused with a
    PipelineError, unless `allow_breaking`: then it is printed and returned, to be recorded."""
    directory = model_dir(repository, name)
    if not (directory / MANIFEST).is_file():
        return []
    published = read_manifest(directory)
    changes = breaking_changes(describe(published), describe(contract))
    if changes and not allow_breaking:
        raise PipelineError(
            f"{name}: the new input schema breaks the one clients of version {published.get('version')} use: "
            f"{'; '.join(changes)}. Publish it under a new model name (train with --name), or pass "
            "--allow-breaking to replace it anyway"
        )
    version = published.get("version")
    for change in changes:
        log(f"{name}: breaking the input schema of version {version} (--allow-breaking): {change}")
    return changes


def export_run(
    run_dir: Path, repository: Path, keep_versions: bool = False, allow_breaking: bool = False, log=print
) -> dict:
    """Export, verify and publish one run; returns the published manifest. Nothing is published when
    verification fails (`VerificationError`), or when the run's input schema breaks the published one's
    without `allow_breaking` (PipelineError)."""
    name = run_dir.name
    model_dir(repository, name)  # checks the name before anything is written
    model, payload = load_checkpoint(run_dir / "checkpoint.pt")
    contract = {
        "task": model.spec.task,
        "features": [f.to_dict() for f in model.spec.features],
        "class_names": payload["class_names"],
        "target_names": payload["target_names"],
        "threshold": model.spec.threshold,
        "clip": model.spec.clip,
    }
    breaking = schema_changes(repository, name, contract, allow_breaking, log)
    held_out = payload["held_out"].numpy()
    rows = parity.parity_rows(model.spec.features, held_out)
    with tempfile.TemporaryDirectory(prefix=f"export-{name}-") as scratch:
        onnx_file = Path(scratch) / MODEL_FILE
        log(f"{name}: exporting to ONNX (opset {OPSET})")
        metadata = graph_metadata(model, name, payload["class_names"], payload["target_names"])
        export_onnx(model, torch.from_numpy(rows[:7]), onnx_file, metadata)
        log(f"{name}: verifying on {len(rows)} rows at batch sizes {', '.join(map(str, parity.BATCH_SIZES))}")
        try:
            results = compile_result(run_dir) + verify(model, onnx_file, rows)
        except VerificationError as exc:
            log(parity_table(exc.results))
            raise
        log(parity_table(results))
        inputs, outputs = graph_io(onnx_file)
        manifest = {
            "name": name,
            "platform": PLATFORM,
            "opset": OPSET,
            "inputs": inputs,
            "outputs": outputs,
            **contract,
            "metrics": payload["metrics"],
            "parity": {
                "rows": len(rows),
                "batch_sizes": list(parity.BATCH_SIZES),
                "backends": [r.to_dict() for r in results],
            },
            "training": {"config": payload["config"], "versions": payload["versions"]},
            "producer": producer_versions(),
        }
        published = publish(repository, name, onnx_file, manifest, keep_versions, breaking)
    log(f"{name}: published {published}")
    return read_manifest(published.parent.parent)


def verify_published(run_dir: Path, repository: Path, log=print) -> list[BackendResult]:
    """Re-verify the published model against its checkpoint (and its sha256 against the manifest)."""
    directory = model_dir(repository, run_dir.name)
    manifest = read_manifest(directory)
    onnx_file = directory / str(manifest["version"]) / MODEL_FILE
    if not onnx_file.is_file() or sha256_of(onnx_file) != manifest["sha256"]:
        raise PipelineError(f"{onnx_file} is missing or does not match the sha256 in its manifest")
    model, payload = load_checkpoint(run_dir / "checkpoint.pt")
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())
    try:
        results = verify(model, onnx_file, rows)
    except VerificationError as exc:
        log(parity_table(exc.results))
        raise
    log(parity_table(results))
    return results


def final_line(manifest: dict, repository: Path) -> str:
    """One line per published model (what `--quiet` prints): its metric and where it went."""
    return f"{manifest['name']}: {metric_text(manifest['metrics'])} → {repository / manifest['name']}"


def metric_text(metrics: dict) -> str:
    return f"accuracy {metrics['accuracy']:.3f}" if "accuracy" in metrics else f"RMSE {metrics['rmse']:.3f}"


def summary_table(manifests: list[dict]) -> str:
    """`make all`'s closing table: metric, parity max abs diff per backend, file size."""
    backends = [b["backend"] for b in manifests[0]["parity"]["backends"]] if manifests else []
    rows = [("model", "task", "test metric", *(f"{b} max|Δ|" for b in backends), "onnx size")]
    for m in manifests:
        metric = metric_text(m["metrics"])
        diffs = []
        for b in m["parity"]["backends"]:
            worst = max((o["max_abs"] for o in b["outputs"]), default=0.0)
            need = max((o["min_tolerance"] for o in b["outputs"]), default=0.0)
            text = f"{worst:.1e} (min tol {need:.0e}) {b['status']}"
            diffs.append("skipped" if b["status"] == "skipped" else text)
        rows.append((m["name"], m["task"], metric, *diffs, f"{m['size_bytes'] / 1024:.1f} KiB"))
    return text_table(rows)
