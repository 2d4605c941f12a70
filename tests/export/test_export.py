"""Export: the model repository's layout and contracts, verification that bites, atomic publication."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from numpy.testing import assert_allclose
from tritonclient.grpc import model_config_pb2

from export import run as export_run_module
from export.repository import sha256_of
from export.run import export_run
from export.verify import VerificationError, verify
from pipeline.checks import parity
from pipeline.config import builtin_config, builtin_names
from tests.conftest import quiet, run_cli
from tests.permissions import small_filesystem

TRITON_TO_NUMPY = {model_config_pb2.TYPE_FP32: np.float32, model_config_pb2.TYPE_INT64: np.int64}
ONNX_TO_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64}


def tree(directory):
    """Every file under `directory` with its bytes (hidden staging included, so leftovers show)."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("name", builtin_names())
def test_layout_graph_and_metadata(repository, name):
    directory = repository / name
    assert sorted(p.name for p in directory.iterdir()) == ["1", "config.pbtxt", "manifest.json"]
    model = onnx.load(str(directory / "1" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (features,) = model.graph.input
    dims = features.type.tensor_type.shape.dim
    assert features.name == "features" and features.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims[0].dim_param == "batch" and dims[1].dim_value == len(builtin_features(name))
    task = builtin_config(name).task
    expected = ["prediction"] if task == "regression" else ["logits", "probabilities", "label"]
    assert [o.name for o in model.graph.output] == expected
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["task"] == task
    assert json.loads(metadata["feature_names"]) == builtin_features(name)
    assert float(metadata["threshold"]) == 0.5
    if task == "multiclass":
        assert json.loads(metadata["class_names"])[:2] == ["mammal", "bird"]
    if task == "regression":
        assert json.loads(metadata["target_names"]) == ["mpg"]


def builtin_features(name: str) -> list[str]:
    config = builtin_config(name)
    with open(config.data, newline="") as f:
        header = next(csv.reader(f))
    return [c for c in header if c != config.target and c not in config.ignore]


@pytest.mark.parametrize("name", builtin_names())
def test_config_pbtxt_parses_as_triton_model_config_and_agrees_with_the_graph(repository, name):
    config = text_format.Parse(
        (repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert config.name == name and config.platform == "onnxruntime_onnx" and config.max_batch_size > 0
    assert config.HasField("dynamic_batching")
    graph = onnx.load(str(repository / name / "1" / "model.onnx")).graph
    for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in actual]
        for tensor, value in zip(declared, actual):
            assert TRITON_TO_NUMPY[tensor.data_type] == ONNX_TO_NUMPY[value.type.tensor_type.elem_type]
            graph_dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]  # without batch
            model_dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
            assert model_dims == graph_dims, tensor.name


@pytest.mark.parametrize("name", builtin_names())
def test_manifest(repository, name):
    manifest = json.loads((repository / name / "manifest.json").read_text())
    onnx_file = repository / name / "1" / "model.onnx"
    assert (
        manifest["sha256"] == sha256_of(onnx_file)
        and manifest["versions"]["1"]["sha256"] == manifest["sha256"]
    )
    assert manifest["name"] == name and manifest["version"] == 1
    assert manifest["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, len(builtin_features(name))]}
    ]
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["producer"])
    backends = {b["backend"]: b for b in manifest["parity"]["backends"]}
    assert backends["onnxruntime-cpu"]["status"] == "passed"
    assert backends["torch.compile"]["status"] == "passed"
    for output in backends["onnxruntime-cpu"]["outputs"]:
        assert {"max_abs", "p99_abs", "max_rel", "p99_rel", "min_tolerance", "passed"} <= set(output)
    assert [f["name"] for f in manifest["features"]] == builtin_features(name)


def test_graph_preprocessing_equals_training_encoding_on_raw_csv_rows(repository, trained):
    """Encode the raw CSV in numpy from the manifest's statistics, run the trained MLP on that, and
    compare with onnxruntime fed the raw values (NaN for the six missing horsepower cells)."""
    model, _ = trained["auto-mpg"]
    manifest = json.loads((repository / "auto-mpg" / "manifest.json").read_text())
    with open(builtin_config("auto-mpg").data, newline="") as f:
        records = list(csv.DictReader(f))
    features = manifest["features"]
    raw = np.array(
        [[float(r[f["name"]]) if r[f["name"]] else np.nan for f in features] for r in records],
        dtype=np.float32,
    )
    assert np.isnan(raw).sum() == 6
    numeric = [f for f in features if f["kind"] == "numeric"]
    clip = manifest["clip"]  # standardized numbers are soft-clipped: z / sqrt(1 + (z / clip)^2)
    encoded = []
    for f in numeric:
        z = (np.nan_to_num(raw[:, features.index(f)], nan=f["mean"]) - f["mean"]) / f["std"]
        encoded.append(z / np.sqrt(1 + (z / clip) ** 2) if clip else z)
    for f in features:
        if f["kind"] == "categorical":
            encoded += [(raw[:, features.index(f)] == c).astype(np.float32) for c in f["categories"]]
    encoded = np.stack(encoded, axis=1).astype(np.float32)
    with torch.no_grad():
        (expected,) = model.head(model.mlp(torch.from_numpy(encoded)))
    session = ort.InferenceSession(str(repository / "auto-mpg" / "1" / "model.onnx"))
    (actual,) = session.run(None, {"features": raw})
    assert_allclose(actual, expected.numpy(), rtol=1e-5, atol=1e-4)
    mpg = np.array([float(r["mpg"]) for r in records])
    assert np.sqrt(((actual[:, 0] - mpg) ** 2).mean()) < 4.0  # and it predicts mpg, in mpg


def rows_for(trained, name):
    model, payload = trained[name]
    return model, parity.parity_rows(model.spec.features, payload["held_out"].numpy())


def edited_copy(repository, name, tmp_path, edit):
    proto = onnx.load(str(repository / name / "1" / "model.onnx"))
    edit(proto)
    path = tmp_path / "edited.onnx"
    onnx.save(proto, str(path))
    return path


def test_verification_catches_a_perturbed_weight(repository, trained, tmp_path):
    def perturb(proto):
        weight = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))  # a weight matrix
        array = onnx.numpy_helper.to_array(weight).copy()
        array.flat[0] += 0.05
        weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))

    model, rows = rows_for(trained, "auto-mpg")
    with pytest.raises(VerificationError) as error:
        verify(model, edited_copy(repository, "auto-mpg", tmp_path, perturb), rows)
    (failed,) = [r for r in error.value.results if r.status == "failed"]
    assert failed.backend == "onnxruntime-cpu"
    assert [d.output for d in failed.outputs if not d.passed] == ["prediction"]
    assert failed.outputs[0].max_abs > 1e-3 and "prediction" in str(error.value)


def test_verification_catches_a_wrong_output_name(repository, trained, tmp_path):
    def rename(proto):
        for node in proto.graph.node:
            node.input[:] = ["scores" if o == "logits" else o for o in node.input]
            node.output[:] = ["scores" if o == "logits" else o for o in node.output]
        proto.graph.output[0].name = "scores"

    model, rows = rows_for(trained, "zoo-multiclass")
    with pytest.raises(VerificationError, match=r"logits missing"):
        verify(model, edited_copy(repository, "zoo-multiclass", tmp_path, rename), rows)


def test_verification_catches_a_wrong_shape(repository, trained, tmp_path):
    def flatten(proto):  # probabilities (batch, 7) → (1, batch·7)
        for node in proto.graph.node:
            node.output[:] = ["unflat" if o == "probabilities" else o for o in node.output]
        proto.graph.node.append(onnx.helper.make_node("Flatten", ["unflat"], ["probabilities"], axis=0))
        proto.graph.output[1].type.tensor_type.shape.Clear()

    model, rows = rows_for(trained, "zoo-multiclass")
    with pytest.raises(VerificationError, match=r"probabilities shape"):
        verify(model, edited_copy(repository, "zoo-multiclass", tmp_path, flatten), rows)


def test_failed_verification_publishes_nothing(repository, runs_dir, monkeypatch, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(repository / "zoo-mammal", repo / "zoo-mammal")
    before = tree(repo)
    real_export = export_run_module.export_onnx

    def export_then_break(model, example, path, metadata):
        real_export(model, example, path, metadata)
        proto = onnx.load(str(path))
        weight = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        array = onnx.numpy_helper.to_array(weight) * 3
        weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
        onnx.save(proto, str(path))
        return path

    monkeypatch.setattr(export_run_module, "export_onnx", export_then_break)
    with pytest.raises(VerificationError):
        export_run(runs_dir / "zoo-mammal", repo, log=quiet)
    assert tree(repo) == before


def test_interrupted_publication_leaves_the_previous_version_byte_identical(
    repository, runs_dir, monkeypatch, tmp_path
):
    repo = tmp_path / "models"
    shutil.copytree(repository / "auto-mpg", repo / "auto-mpg")
    before = tree(repo)
    from export import repository as repository_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C halfway through writing the version

    monkeypatch.setattr(repository_module, "config_pbtxt", crash)
    with pytest.raises(KeyboardInterrupt):
        export_run(runs_dir / "auto-mpg", repo, log=quiet)
    assert tree(repo) == before
    assert sorted(p.name for p in repo.iterdir()) == ["auto-mpg"]  # no staging directory left


def test_keep_versions_publishes_the_next_version(repository, runs_dir, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(repository / "zoo-mammal", repo / "zoo-mammal")
    first = (repo / "zoo-mammal" / "1" / "model.onnx").read_bytes()
    manifest = export_run(runs_dir / "zoo-mammal", repo, keep_versions=True, log=quiet)
    assert manifest["version"] == 2 and sorted(manifest["versions"]) == ["1", "2"]
    assert (repo / "zoo-mammal" / "1" / "model.onnx").read_bytes() == first
    assert manifest["sha256"] == sha256_of(repo / "zoo-mammal" / "2" / "model.onnx")
    manifest = export_run(runs_dir / "zoo-mammal", repo, log=quiet)  # without the flag: back to one
    assert manifest["version"] == 1 and sorted(p.name for p in (repo / "zoo-mammal").iterdir()) == [
        "1",
        "config.pbtxt",
        "manifest.json",
    ]


def test_cli_errors_are_one_line(tmp_path):
    from tests.conftest import run_cli

    result = run_cli(
        "-m",
        "export",
        "export",
        "--model",
        "zoo-mammal",
        "--runs-dir",
        str(tmp_path),
        "--repository",
        str(tmp_path / "models"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no checkpoint at") and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


@pytest.mark.cuda
def test_cuda_verification_runs_on_cuda(trained, repository):
    from export.verify import cuda_unavailable_reason

    reason = cuda_unavailable_reason(for_onnxruntime=True)
    if reason:
        pytest.skip(reason)
    model, rows = rows_for(trained, "zoo-multiclass")
    results = {r.backend: r for r in verify(model, repository / "zoo-multiclass" / "1" / "model.onnx", rows)}
    assert results["onnxruntime-cuda"].status == "passed"
    assert results["onnxruntime-cuda"].provider == "CUDAExecutionProvider"
    assert results["torch-cuda"].provider.startswith("cuda")


def test_a_full_disk_during_export_is_one_line_and_leaves_the_repository_as_it_was(runs_dir, tmp_path):
    models = tmp_path / "models"
    with small_filesystem(models, "12k"):  # too small for the ONNX file
        result = run_cli("-m", "export", "export", "--model", "zoo-mammal", "--runs-dir", str(runs_dir),
                         "--repository", str(models))  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: No space left on device: "), lines
        assert os.listdir(models) == []  # nothing published, no staging left
