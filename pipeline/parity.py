"""What "outputs match" means (DESIGN §5): the inputs to compare on and the comparison itself.

Used by the torch.compile stage here and by ONNX verification in `export.verify`. A candidate passes an
output when every element satisfies |a - b| <= atol OR |a - b| <= rtol * |b| (b the reference);
probabilities are compared by atol alone, and decisions (labels) must agree on every row except ties
within tolerance, which are reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.data import Feature

BATCH_SIZES = (1, 7, 1024)
ATOL = RTOL = 1e-5  # float32 on CPU; measured differences on these models are 1e-7 … 8e-6


def parity_rows(features: list[Feature], held_out: np.ndarray, seed: int = 0, n_random: int = 1024):
    """Edge rows, then held-out rows, then random rows around the training distribution (float32)."""
    rng = np.random.default_rng(seed)
    n = len(features)
    center = np.array([f.mean if f.kind == "numeric" else f.categories[0] for f in features])
    edges = []
    for j, f in enumerate(features):
        if f.kind == "numeric":
            for value in (np.nan, f.mean + 1e4 * f.std, f.mean - 1e4 * f.std, f.mean + 100 * f.std):
                row = center.copy()
                row[j] = value
                edges.append(row)
        else:
            for value in (np.nan, max(f.categories) + 1.0, -1.0, f.categories[0] + 0.5):
                row = center.copy()
                row[j] = value
                edges.append(row)
    edges.append(np.full(n, np.nan))  # every value missing
    random = np.empty((n_random, n))
    for j, f in enumerate(features):
        if f.kind == "numeric":
            random[:, j] = rng.normal(f.mean, 1.5 * f.std, n_random)
        else:
            random[:, j] = rng.choice(f.categories, n_random)
    rows = np.concatenate([np.array(edges), held_out.reshape(-1, n), random])
    return rows.astype(np.float32)


def batches(rows: np.ndarray, sizes=BATCH_SIZES, max_batches: int = 40):
    """(batch_size, batch) pairs: up to `max_batches` consecutive batches of each size."""
    for size in sizes:
        if len(rows) < size:
            raise ValueError(f"need at least {size} parity rows, got {len(rows)}")
        for start in range(0, min(len(rows) - size + 1, size * max_batches), size):
            yield size, rows[start : start + size]


@dataclass
class OutputDiff:
    output: str
    max_abs: float = 0.0
    p99_abs: float = 0.0
    max_rel: float = 0.0
    p99_rel: float = 0.0
    min_tolerance: float = 0.0  # smallest atol = rtol (atol alone for probabilities) that passes
    tolerance: float = 0.0  # the tolerance applied
    mismatched_labels: int = 0
    ties: int = 0  # label disagreements where the reference is within tolerance of a tie
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "problems": list(self.problems), "passed": self.passed}


class ParityError(Exception):
    """A candidate's outputs differ from the reference beyond tolerance; carries every failing diff."""

    def __init__(self, backend: str, diffs: list[OutputDiff]):
        self.backend, self.diffs = backend, diffs
        lines = [f"{d.output}: {'; '.join(d.problems)}" for d in diffs if not d.passed]
        super().__init__(f"{backend} does not match the reference: " + " | ".join(lines))


def compare(
    reference: dict[str, list[np.ndarray]],
    candidate: dict[str, list[np.ndarray]],
    expected: dict[str, np.dtype],
    atol: float = ATOL,
    rtol: float = RTOL,
    threshold: float = 0.5,
) -> list[OutputDiff]:
    """Compare per-batch outputs of a candidate with the reference; `expected` names the contract's
    outputs and dtypes. Returns one diff per expected output (check failures inside)."""
    diffs = []
    for name, dtype in expected.items():
        diff = OutputDiff(name, tolerance=atol)
        problems = []
        if name not in candidate:
            diffs.append(OutputDiff(name, tolerance=atol, problems=(f"missing (got {sorted(candidate)})",)))
            continue
        pairs = list(zip(reference[name], candidate[name]))
        got_dtypes = {str(b.dtype) for _, b in pairs}
        if got_dtypes != {np.dtype(dtype).name}:
            problems.append(f"dtype {sorted(got_dtypes)} != {np.dtype(dtype).name}")
        shapes = [(a.shape, b.shape) for a, b in pairs if a.shape != b.shape]
        if shapes:
            problems.append(f"shape {shapes[0][1]} != {shapes[0][0]}")
        if problems:
            diffs.append(OutputDiff(name, tolerance=atol, problems=tuple(problems)))
            continue
        ref = np.concatenate([a.reshape(len(a), -1) for a, _ in pairs]).astype(np.float64)
        got = np.concatenate([b.reshape(len(b), -1) for _, b in pairs]).astype(np.float64)
        if name == "label":
            mismatched = np.flatnonzero(ref[:, 0] != got[:, 0])
            diff.mismatched_labels = len(mismatched)
            diff.ties = count_ties(mismatched, reference.get("probabilities"), atol, threshold)
            if diff.mismatched_labels > diff.ties:
                problems.append(
                    f"{diff.mismatched_labels - diff.ties} of {ref.size} labels differ "
                    f"(not counting {diff.ties} ties within tolerance)"
                )
        else:
            bad = ~np.isfinite(got) & np.isfinite(ref)
            if bad.any():
                problems.append(f"{int(bad.sum())} NaN/Inf values where the reference is finite")
            finite = np.isfinite(ref) & np.isfinite(got)
            abs_diff = np.abs(ref - got)[finite]
            rel_diff = abs_diff / np.maximum(np.abs(ref[finite]), np.finfo(np.float64).tiny)
            if abs_diff.size:
                diff.max_abs, diff.p99_abs = float(abs_diff.max()), float(np.percentile(abs_diff, 99))
                diff.max_rel, diff.p99_rel = float(rel_diff.max()), float(np.percentile(rel_diff, 99))
                by_atol_only = name == "probabilities"
                need = abs_diff if by_atol_only else np.minimum(abs_diff, rel_diff)
                diff.min_tolerance = float(need.max())
                passes = (
                    abs_diff <= atol
                    if by_atol_only
                    else (abs_diff <= atol) | (abs_diff <= rtol * np.abs(ref[finite]))
                )
                if not passes.all():
                    problems.append(
                        f"{int((~passes).sum())} values beyond tolerance {atol:g}: "
                        f"max abs {diff.max_abs:.3g}, max rel {diff.max_rel:.3g}"
                    )
        diff.problems = tuple(problems)
        diffs.append(diff)
    return diffs


def count_ties(
    rows: np.ndarray, probabilities: list[np.ndarray] | None, atol: float, threshold: float
) -> int:
    """How many of `rows` sit within tolerance of a decision tie in the reference probabilities."""
    if probabilities is None or not len(rows):
        return 0
    p = np.concatenate([b.reshape(len(b), -1) for b in probabilities]).astype(np.float64)[rows]
    if p.shape[1] == 1:
        return int((np.abs(p[:, 0] - threshold) <= atol).sum())
    top2 = np.sort(p, axis=1)[:, -2:]
    return int((top2[:, 1] - top2[:, 0] <= atol).sum())


def run_batches(predict, rows: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Outputs of `predict(batch) -> {name: array}` over the parity batches, per output name."""
    outputs: dict[str, list[np.ndarray]] = {}
    for _, batch in batches(rows):
        for name, value in predict(batch).items():
            outputs.setdefault(name, []).append(value)
    return outputs
