"""Parity verification of an exported ONNX model against the eager torch module (the README's "Parity"
section).

Reference: eager torch, float32, eval, inference_mode. Candidates: onnxruntime on CPU always; onnxruntime
on CUDA and torch on CUDA when a CUDA device (and onnxruntime-gpu) are present, else skipped with the
reason. Every backend is checked and every failure collected before one `VerificationError` is raised.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
import torch

from pipeline.checks import parity
from pipeline.checks.compiled import torch_predict
from pipeline.display import text_table
from pipeline.tasks import OUTPUT_DTYPES
from pipeline.training.models import TabularModel

CUDA_TOLERANCE = 1e-4  # float32 on GPU with TF32 off; recorded in the report
# Every candidate checked against eager torch; torch.compile's check runs in `pipeline.checks.compiled`.
BACKENDS = ("torch.compile", "onnxruntime-cpu", "onnxruntime-cuda", "torch-cuda")


@dataclass(kw_only=True)
class BackendResult:
    backend: str
    status: str  # "passed" | "failed" | "skipped"
    reason: str = ""
    tolerance: float = parity.ATOL
    provider: str = ""  # the device the work really ran on
    outputs: list[parity.OutputDiff] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "status": self.status,
            "reason": self.reason,
            "tolerance": self.tolerance,
            "provider": self.provider,
            "outputs": [d.to_dict() for d in self.outputs],
        }


class VerificationError(Exception):
    """One or more backends failed; `results` holds every backend's numbers."""

    def __init__(self, results: list[BackendResult]):
        self.results = results
        failed = [r for r in results if r.status == "failed"]
        parts = []
        for r in failed:
            problems = [f"{d.output} {', '.join(d.problems)}" for d in r.outputs if not d.passed]
            parts.append(f"{r.backend}: {'; '.join(problems) or r.reason}")
        super().__init__("verification failed: " + " | ".join(parts))


def ort_predict(session: ort.InferenceSession):
    names = [o.name for o in session.get_outputs()]

    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {session.get_inputs()[0].name: batch})))

    return predict


def cuda_unavailable_reason(for_onnxruntime: bool) -> str:
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    if for_onnxruntime and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install the `cuda` extra: onnxruntime-gpu)"
    return ""


def check_backend(
    backend, predict, reference, rows, expected, tolerance, threshold, provider, allowance=None
) -> BackendResult:
    try:
        outputs = parity.run_batches(predict, rows)
    except Exception as exc:  # a graph that cannot run at some batch size is a failed backend
        return BackendResult(
            backend=backend,
            status="failed",
            reason=f"could not run: {exc}",
            tolerance=tolerance,
            provider=provider,
        )
    diffs = parity.compare(
        reference, outputs, expected, tolerance, tolerance, threshold=threshold, allowance=allowance
    )
    status = "passed" if all(d.passed for d in diffs) else "failed"
    return BackendResult(
        backend=backend, status=status, tolerance=tolerance, provider=provider, outputs=diffs
    )


def open_session(onnx_path, providers) -> ort.InferenceSession | str:
    """A session, or the one-line reason onnxruntime refused the file."""
    try:
        return ort.InferenceSession(str(onnx_path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
        return f"onnxruntime could not load the graph: {str(exc).strip().splitlines()[0]}"


def onnxruntime_cpu(onnx_path, tolerance, **kw) -> BackendResult:
    session = open_session(onnx_path, ["CPUExecutionProvider"])
    if isinstance(session, str):
        return BackendResult(backend="onnxruntime-cpu", status="failed", reason=session, tolerance=tolerance)
    return check_backend(
        "onnxruntime-cpu",
        ort_predict(session),
        tolerance=tolerance,
        provider=session.get_providers()[0],
        **kw,
    )


def onnxruntime_cuda(onnx_path, tolerance, **kw) -> BackendResult:
    reason = cuda_unavailable_reason(for_onnxruntime=True)
    if reason:
        return BackendResult(backend="onnxruntime-cuda", status="skipped", reason=reason, tolerance=tolerance)
    providers = [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
    session = open_session(onnx_path, providers)
    if isinstance(session, str):
        return BackendResult(backend="onnxruntime-cuda", status="failed", reason=session, tolerance=tolerance)
    active = session.get_providers()[0]
    if active != "CUDAExecutionProvider":  # onnxruntime falls back to CPU silently
        reason = f"session fell back to {active}"
        return BackendResult(
            backend="onnxruntime-cuda", status="failed", reason=reason, tolerance=tolerance, provider=active
        )
    return check_backend("onnxruntime-cuda", ort_predict(session), tolerance=tolerance, provider=active, **kw)


def torch_cuda(model: TabularModel, tolerance, **kw) -> BackendResult:
    reason = cuda_unavailable_reason(for_onnxruntime=False)
    if reason:
        return BackendResult(backend="torch-cuda", status="skipped", reason=reason, tolerance=tolerance)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    on_gpu = copy.deepcopy(model).to("cuda")
    device = str(next(on_gpu.parameters()).device)
    predict = torch_predict(on_gpu, model.output_names, device="cuda")
    return check_backend("torch-cuda", predict, tolerance=tolerance, provider=device, **kw)


def verify(model: TabularModel, onnx_path, rows: np.ndarray, cuda_tolerance: float = CUDA_TOLERANCE):
    """Check the exported graph (and torch on CUDA) against eager torch on `rows` at batch sizes 1, 7 and
    1024. Returns the per-backend results; raises `VerificationError` if any backend failed."""
    model.eval()
    reference = parity.run_batches(torch_predict(model, model.output_names), rows)
    common = {
        "reference": reference,
        "rows": rows,
        "threshold": model.spec.threshold,
        "expected": {n: OUTPUT_DTYPES[n] for n in model.output_names},
        "allowance": parity.run_batches(parity.roundoff(model), rows),
    }
    results = [
        onnxruntime_cpu(onnx_path, tolerance=parity.ATOL, **common),
        onnxruntime_cuda(onnx_path, cuda_tolerance, **common),
        torch_cuda(model, cuda_tolerance, **common),
    ]
    if any(r.status == "failed" for r in results):
        raise VerificationError(results)
    return results


def parity_table(results: list[BackendResult]) -> str:
    """The terminal table: one line per backend and output."""
    rows = [("backend", "output", "max abs", "p99 abs", "max rel", "p99 rel", "min tol", "tol", "result")]
    for r in results:
        if r.status == "skipped":
            rows.append((r.backend, "-", "", "", "", "", "", "", f"skipped: {r.reason}"))
            continue
        for d in r.outputs:
            verdict = "pass" if d.passed else "FAIL"
            if d.output == "label":
                rows.append(
                    (
                        r.backend,
                        d.output,
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        f"{verdict} ({d.mismatched_labels} differ, {d.ties} ties)",
                    )
                )
                continue
            rows.append(
                (
                    r.backend,
                    d.output,
                    f"{d.max_abs:.2e}",
                    f"{d.p99_abs:.2e}",
                    f"{d.max_rel:.2e}",
                    f"{d.p99_rel:.2e}",
                    f"{d.min_tolerance:.2e}",
                    f"{d.tolerance:g}",
                    f"{verdict} ({d.roundoff} within float32 round-off)" if d.roundoff else verdict,
                )
            )
    return text_table(rows)
