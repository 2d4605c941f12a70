"""What "outputs match" means (the README's "Parity" section): the inputs to compare on and the
comparison itself.

Used by the torch.compile stage here and by ONNX verification in `export.verify`. A candidate passes an
output when every element satisfies |a - b| <= atol OR |a - b| <= rtol * |b| (b the reference);
probabilities are compared by atol alone, and decisions (labels) must agree on every row except ties
within tolerance, which are reported.

One more bound admits float32 round-off: on the edge rows (inputs 100 or 10^4 standard deviations out)
the network's intermediate sums are large, an output can be small after cancellation, and two correct
float32 implementations then differ by more than rtol * |b| (seen: 4e-5 on an output of 0.98, where
onnxruntime was the *closer* of the two to the float64 result). `roundoff` computes, per output element,
ROUNDOFF_UNITS float32 unit roundoffs of the magnitude of the computation behind it (|W| and |x|
propagated through the layers in float64); an element within that bound passes and is counted apart.
Measured differences reach 1.1 units; a real defect (a perturbed weight) exceeds it on ordinary rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from contract.features import Feature, date_seconds

BATCH_SIZES = (1, 7, 1024)
ATOL = RTOL = 1e-5  # float32 on CPU; measured differences on these models are 1e-7 … 8e-6
UNIT_ROUNDOFF = 2.0**-24  # float32
ROUNDOFF_UNITS = 8  # the round-off bound, in unit roundoffs of each element's magnitude scale


# Dates the calendar arithmetic must get right (pipeline.training.dates), as seconds since the epoch.
DATE_EDGES = tuple(
    date_seconds(text)
    for text in (
        "1970-01-01",  # the epoch
        "1970-01-01T23:59:59",
        "1969-12-31T23:59:59",  # just before it: negative seconds
        "1900-03-01",  # after 1900's February 28 (not a leap year)
        "2000-02-29",  # a century that is a leap year
        "2024-02-29",
        "2024-12-31T12:00:00",  # the last day of a leap year
        "2038-01-19T03:14:08",  # past 32-bit time
        "2100-02-28",  # 2100 is not a leap year
        "2100-03-01",
        "9999-12-31",
    )
)


def parity_rows(features: list[Feature], held_out: np.ndarray, seed: int = 0, n_random: int = 1024):
    """Edge rows, then held-out rows, then random rows around the training distribution (float32)."""
    rng = np.random.default_rng(seed)
    n = len(features)
    center = np.array([f.categories[0] if f.kind == "categorical" else f.mean for f in features])
    edges = []
    for j, f in enumerate(features):
        if f.kind == "categorical":
            values = [np.nan, max(f.categories) + 1.0, -1.0, f.categories[0] + 0.5]
        else:  # numbers, dates (seconds), booleans (0/1) are values
            values = [np.nan, f.mean + 1e4 * f.std, f.mean - 1e4 * f.std, f.mean + 100 * f.std]
            values += {"date": list(DATE_EDGES), "boolean": [0.0, 1.0]}.get(f.kind, [])
        for value in values:
            row = center.copy()
            row[j] = value
            edges.append(row)
    edges.append(np.full(n, np.nan))  # every value missing
    random = np.empty((n_random, n))
    for j, f in enumerate(features):
        if f.kind == "categorical":
            random[:, j] = rng.choice(f.categories, n_random)
        elif f.kind == "boolean":
            random[:, j] = rng.integers(0, 2, n_random)
        else:
            random[:, j] = rng.normal(f.mean, 1.5 * f.std, n_random)
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
    roundoff: int = 0  # elements beyond atol/rtol but within the float32 round-off bound
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
    allowance: dict[str, list[np.ndarray]] | None = None,
) -> list[OutputDiff]:
    """Compare per-batch outputs of a candidate with the reference; `expected` names the contract's
    outputs and dtypes; `allowance` the round-off bound per element (see `roundoff`). Returns one diff
    per expected output (check failures inside)."""
    allowance = allowance or {}
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
            bound = flat(allowance["probabilities"]) if "probabilities" in allowance else None
            diff.ties = count_ties(mismatched, reference.get("probabilities"), atol, threshold, bound)
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
                if name in allowance:
                    within = abs_diff <= np.broadcast_to(flat(allowance[name]), ref.shape)[finite]
                    diff.roundoff = int((~passes & within).sum())
                    passes |= within
                if not passes.all():
                    problems.append(
                        f"{int((~passes).sum())} values beyond tolerance {atol:g}: "
                        f"max abs {diff.max_abs:.3g}, max rel {diff.max_rel:.3g}"
                    )
        diff.problems = tuple(problems)
        diffs.append(diff)
    return diffs


def flat(batches: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([b.reshape(len(b), -1) for b in batches]).astype(np.float64)


def count_ties(
    rows: np.ndarray,
    probabilities: list[np.ndarray] | None,
    atol: float,
    threshold: float,
    bound: np.ndarray | None = None,
) -> int:
    """How many of `rows` sit within tolerance (or the round-off `bound`) of a decision tie in the
    reference probabilities."""
    if probabilities is None or not len(rows):
        return 0
    p = flat(probabilities)[rows]
    near = np.full(len(rows), atol) if bound is None else np.maximum(atol, 2 * bound[rows].max(axis=1))
    if p.shape[1] == 1:
        return int((np.abs(p[:, 0] - threshold) <= near).sum())
    top2 = np.sort(p, axis=1)[:, -2:]
    return int((top2[:, 1] - top2[:, 0] <= near).sum())


def roundoff(model):
    """`predict(batch) -> {output: bound}`: per element, ROUNDOFF_UNITS float32 unit roundoffs of the
    magnitude scale of its computation (the network run in float64 on |inputs| with |weights|)."""
    import torch

    from pipeline.training.models import ACTIVATIONS

    bounded = {"sigmoid", "tanh"}  # |activation| <= 1

    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            x, p = torch.from_numpy(batch).double(), model.preprocess
            parts = []
            if p.has_numeric:
                numeric = x[:, p.numeric_index]
                numeric = torch.where(torch.isnan(numeric), p.mean.double(), numeric)
                parts.append((numeric.abs() + p.mean.double().abs()) / p.std.double())
            if p.has_categorical:
                parts.append(torch.ones(len(x), len(p.slot_index), dtype=torch.float64))
            if p.dates.width:
                parts.append(p.dates.magnitude(torch.from_numpy(batch)))
            scale = torch.cat(parts, dim=1)
            for layer in model.mlp:
                if isinstance(layer, torch.nn.Linear):
                    scale = scale @ layer.weight.double().abs().T + layer.bias.double().abs()
                elif model.spec.activation in bounded and isinstance(
                    layer, ACTIVATIONS[model.spec.activation]
                ):
                    scale = torch.ones_like(scale)
            logits = (ROUNDOFF_UNITS * UNIT_ROUNDOFF * scale).numpy()
        std = np.abs(np.array(model.spec.target_std or [1.0]))
        spread = np.broadcast_to(logits.max(axis=1, keepdims=True) / 2, logits.shape)  # softmax, sigmoid
        bounds = {"logits": logits, "probabilities": spread, "prediction": logits * std}
        return {name: bounds[name].astype(np.float64) for name in model.output_names if name in bounds}

    return predict


def run_batches(predict, rows: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Outputs of `predict(batch) -> {name: array}` over the parity batches, per output name."""
    outputs: dict[str, list[np.ndarray]] = {}
    for _, batch in batches(rows):
        for name, value in predict(batch).items():
            outputs.setdefault(name, []).append(value)
    return outputs
