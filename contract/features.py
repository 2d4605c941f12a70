"""The feature spec of an exported model (manifest.json's "features", the graph's metadata) and the
text that means "missing" in a table cell or a request.

Numeric features carry the training mean (the imputed value) and standard deviation; categorical ones
their codes in one-hot order and the text each code stands for. The model takes codes; text is turned
into codes with `labels` → `categories`, and a value never seen in training encodes as all zeros.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

KINDS = ("numeric", "categorical")
MISSING = ("", "na", "nan", "n/a", "?", "null", "none")  # compared lower-cased and stripped


@dataclass(kw_only=True)
class Feature:
    name: str
    kind: str  # "numeric" | "categorical"
    mean: float = 0.0  # numeric: training mean, also the imputed value for NaN
    std: float = 1.0  # numeric: training standard deviation (1 when constant)
    missing: int = 0  # missing values in the training split
    categories: list[float] = field(default_factory=list)  # categorical: codes in one-hot order
    labels: list[str] = field(default_factory=list)  # categorical: the text each code stands for

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Feature:
        return cls(**values)


def is_missing(text: str) -> bool:
    """A cell or request value that means "missing": one of MISSING, any case, any surrounding spaces."""
    return text.strip().lower() in MISSING


def case_variants(token: str) -> list[str]:
    """Every upper/lower-case spelling of `token` (Arrow's CSV reader matches null tokens exactly)."""
    options = [{c.lower(), c.upper()} for c in token]
    return ["".join(p) for p in itertools.product(*options)]


NULL_TOKENS = sorted({v for token in MISSING for v in case_variants(token)})  # the unpadded spellings
