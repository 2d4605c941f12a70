"""Export the eager deployable module to one self-contained ONNX file with its metadata."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import onnx
import torch

from contract.repository import INPUT_NAME
from pipeline.training.models import TabularModel

OPSET = 18
BATCH_AXIS = "batch"


def graph_metadata(model: TabularModel, name: str, class_names: list[str], target_names: list[str]) -> dict:
    """metadata_props: what a user holding only model.onnx needs to know (values are strings)."""
    spec = model.spec
    return {
        "name": name,
        "task": spec.task,
        "feature_names": json.dumps([f.name for f in spec.features]),
        "features": json.dumps([f.to_dict() for f in spec.features]),
        "class_names": json.dumps(class_names),
        "target_names": json.dumps(target_names),
        "threshold": repr(spec.threshold),
        "clip": repr(spec.clip),  # standardized numbers z become z / sqrt(1 + (z / clip)^2); 0: unchanged
        "outputs": json.dumps(list(model.output_names)),
    }


@contextlib.contextmanager
def quiet_exporter():
    """The exporter logs about optional torchvision ops and deprecations that mean nothing here."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: TabularModel, example: torch.Tensor, path: Path, metadata: dict[str, str]) -> Path:
    """Export `model` (eager, eval) with a symbolic batch axis, check it, write it to `path`."""
    if hasattr(model, "_orig_mod"):
        raise ValueError("export the eager module, not the torch.compile wrapper")
    model.eval()
    with quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(model.output_names),
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim(BATCH_AXIS)}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    path.write_bytes(proto.SerializeToString())
    return path
