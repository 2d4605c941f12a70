"""Checkpoints: the eager module's state_dict plus everything needed to rebuild and describe it.

Only tensors, numbers, strings, lists and dicts go in, so `torch.load(..., weights_only=True)` reads it
back and a checkpoint carrying a pickled object is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from contract.publish import atomic_write
from pipeline.errors import PipelineError
from pipeline.training.models import ModelSpec, TabularModel

FORMAT = 1


def versions() -> dict:
    import numpy

    return {"torch": str(torch.__version__), "numpy": str(numpy.__version__)}


def save_checkpoint(path: Path, model: TabularModel, **meta) -> None:
    """Write atomically. `meta` holds plain data: config, class_names, target_names, metrics,
    held_out (a float32 tensor of test rows, for later parity checks)."""
    state = {k: v for k, v in model.state_dict().items()}
    if any(k.startswith("_orig_mod.") for k in state):
        raise ValueError("save the eager module, not the torch.compile wrapper")
    payload = {
        "format": FORMAT,
        "spec": model.spec.to_dict(),
        "state_dict": state,
        "versions": versions(),
        **meta,
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> tuple[TabularModel, dict]:
    """The rebuilt eager model in eval mode, and the checkpoint's other contents."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"no checkpoint at {path}: train the model first") from None
    except Exception as exc:  # torch raises UnpicklingError and others for unsafe or broken files
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0])
        raise PipelineError(f"{path} is not a loadable checkpoint: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PipelineError(f"{path} is not a checkpoint of this project (format {FORMAT})")
    model = TabularModel(ModelSpec.from_dict(payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
