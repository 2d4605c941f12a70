"""The feature spec of an exported model (manifest.json's "features", the graph's metadata) and the
text that means "missing" in a table cell or a request.

Numeric features carry the training mean (the imputed value) and standard deviation; categorical ones
their codes in one-hot order and the text each code stands for. The model takes codes; text is turned
into codes with `labels` → `categories` (`category_code`: surrounding spaces and, where the categories
do not differ only by it, case do not count), and a value never seen in training encodes as all zeros.
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


def category_lookup(labels: list[str], codes: list[float]) -> dict[str, float]:
    """The table `category_code` reads: each training category's text → its code, and its lower-cased
    text too, unless two categories differ only in case (those keep to their exact spelling)."""
    lookup = dict(zip(labels, codes))
    folded: dict[str, list[float]] = {}
    for label, code in zip(labels, codes):
        folded.setdefault(label.lower(), []).append(code)
    for text, found in folded.items():
        if len(found) == 1:
            lookup.setdefault(text, found[0])
    return lookup


def category_code(lookup: dict[str, float], text: str) -> float | None:
    """The code of a category given as text: spaces around it do not count, nor does case (where the
    training categories are told apart without it); None for a value never seen in training."""
    text = text.strip()
    code = lookup.get(text)
    return lookup.get(text.lower()) if code is None else code
