"""Parity, micrograd-style: the same rows into eager torch and a candidate, then assert_allclose.

Parametrized over task × backend × batch size; CUDA cases are marked `cuda` and skip with the reason.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from numpy.testing import assert_allclose

from export.verify import BACKENDS, CUDA_TOLERANCE, cuda_unavailable_reason
from pipeline.checks import parity
from pipeline.config import builtin_config, builtin_names
from pipeline.tasks import TASKS

TASK_OF = {name: builtin_config(name).task for name in builtin_names()}
BATCH_SIZES = parity.BATCH_SIZES
CUDA_BACKENDS = {"onnxruntime-cuda", "torch-cuda"}
CASES = [
    pytest.param(
        name,
        backend,
        size,
        id=f"{TASK_OF[name]}-{backend}-{size}",
        marks=[pytest.mark.cuda] if backend in CUDA_BACKENDS else [],
    )
    for name in builtin_names()
    for backend in BACKENDS
    for size in BATCH_SIZES
]


def test_every_task_and_backend_has_a_case():
    covered = {(TASK_OF[p.values[0]], p.values[1], p.values[2]) for p in CASES}
    for task in TASKS:
        for backend in BACKENDS:
            for size in BATCH_SIZES:
                assert (task, backend, size) in covered, (task, backend, size)


def candidate(backend: str, name: str, repository, trained, compiled_models):
    """`predict(batch) -> tuple of arrays` for one backend, and its tolerance."""
    model, _ = trained[name]
    onnx_file = str(repository / name / "1" / "model.onnx")
    if backend == "torch.compile":
        handle = compiled_models[name]
        return (lambda x: [t.numpy() for t in handle(torch.from_numpy(x))]), parity.ATOL
    if backend == "onnxruntime-cpu":
        session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
        return (lambda x: session.run(None, {"features": x})), parity.ATOL
    reason = cuda_unavailable_reason(for_onnxruntime=backend == "onnxruntime-cuda")
    if reason:
        pytest.skip(reason)
    torch.backends.cuda.matmul.allow_tf32 = False
    if backend == "onnxruntime-cuda":
        session = ort.InferenceSession(onnx_file, providers=[("CUDAExecutionProvider", {"use_tf32": 0})])
        assert session.get_providers()[0] == "CUDAExecutionProvider"  # not a silent CPU fallback
        return (lambda x: session.run(None, {"features": x})), CUDA_TOLERANCE
    on_gpu = type(model)(model.spec).to("cuda")
    on_gpu.load_state_dict(model.state_dict())
    on_gpu.eval()

    def predict(x):
        outputs = on_gpu(torch.from_numpy(x).to("cuda"))
        assert all(t.device.type == "cuda" for t in outputs)  # the work really ran on CUDA
        return [t.cpu().numpy() for t in outputs]

    return predict, CUDA_TOLERANCE


@pytest.mark.parametrize("name,backend,size", CASES)
def test_candidate_matches_eager(name, backend, size, repository, trained, compiled_models):
    model, payload = trained[name]
    predict, tolerance = candidate(backend, name, repository, trained, compiled_models)
    rows = parity.parity_rows(model.spec.features, payload["held_out"].numpy())
    n_batches = 0
    with torch.inference_mode():
        for batch_size, batch in parity.batches(rows, sizes=(size,), max_batches=8):
            expected = [t.numpy() for t in model(torch.from_numpy(batch))]
            actual = predict(batch)
            roundoff = parity.roundoff(model)(batch)  # the rule's float32 round-off bound (README)
            assert len(actual) == len(expected)
            for output, a, e in zip(model.output_names, actual, expected):
                assert a.shape == e.shape and a.dtype == e.dtype, output
                if output == "label":
                    assert np.array_equal(a, e), output
                elif output == "probabilities":
                    assert_allclose(a, e, atol=tolerance, rtol=0, err_msg=output)
                else:  # an element passes on either: |a-e| <= atol, <= rtol·|e| or the round-off bound
                    close = (np.abs(a - e) <= tolerance) | (np.abs(a - e) <= tolerance * np.abs(e))
                    close |= np.abs(a - e) <= roundoff[output]
                    assert close.all(), (output, float(np.abs(a - e).max()))
            n_batches += batch_size == size
    assert n_batches > 0
