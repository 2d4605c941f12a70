"""The feature spec of an exported model (manifest.json's "features", the graph's metadata), the text
that means "missing" in a table cell or a request, and how a date or a yes/no cell becomes the number the
model takes.

Four kinds of feature. The graph takes one float32 per feature:
- numeric: the number itself; the spec carries the training mean (the imputed value) and standard
  deviation;
- categorical: a code; the spec carries the codes in one-hot order and the text each code stands for.
  Text is turned into codes with `labels` → `categories` (`category_code`: surrounding spaces and, where
  the categories do not differ only by it, case do not count); a value never seen in training encodes as
  all zeros;
- date: seconds since 1970-01-01T00:00:00 UTC (`date_seconds` reads ISO 8601 text; a time without a zone
  is UTC); mean and std are those of the training seconds. The graph derives the year and the cyclic
  parts (month, day of week, day of year, time of day) itself;
- boolean: 1 for true / yes, 0 for false / no (`boolean_value`); encoded inside the graph like a number
  (mean and std of the training 0/1 values).
"""

from __future__ import annotations

import calendar
import itertools
import re
from dataclasses import asdict, dataclass, field

KINDS = ("numeric", "categorical", "date", "boolean")
VALUE_KINDS = ("numeric", "date", "boolean")  # the input is a value (not a category code)
MISSING = ("", "na", "nan", "n/a", "?", "null", "none")  # compared lower-cased and stripped
TRUE_WORDS, FALSE_WORDS = ("true", "yes"), ("false", "no")  # a boolean column's text, any case
BOOLEAN_WORDS = TRUE_WORDS + FALSE_WORDS
# ISO 8601 as tables write it: a date, optionally a time (hours, minutes, seconds, a fraction) after `T`
# or a space, and after a time optionally a zone (Z, +01, +0100, +01:00). Training's reader (pyarrow's
# parser) and `date_seconds` read the same texts to the same seconds (tests/contract checks both).
TIME = r"[T ](\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?"
ZONE = r"(Z|[+-]\d{2}(?::?\d{2})?)"
DATE = rf"^(\d{{4}})-(\d{{2}})-(\d{{2}})(?:{TIME}{ZONE}?)?$"
DATE_PATTERN = re.compile(DATE)


@dataclass(kw_only=True)
class Feature:
    name: str
    kind: str  # one of KINDS
    mean: float = 0.0  # numeric, date, boolean: training mean, also the imputed value for NaN
    std: float = 1.0  # numeric, date, boolean: training standard deviation (1 when constant)
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


def date_seconds(text: str) -> float:
    """ISO 8601 text → seconds since the epoch, UTC (a time without a zone is UTC); ValueError else."""
    match = DATE_PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 date (2024-01-31 or 2024-01-31T08:15:00)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    values = [int(v or 0) for v in (year, month, day, hour, minute, second)]
    if not (1 <= values[1] <= 12 and 1 <= values[2] <= calendar.monthrange(values[0], values[1])[1]):
        raise ValueError(f"{text!r} is not a calendar date")
    if values[3] > 23 or values[4] > 59 or values[5] > 59:
        raise ValueError(f"{text!r} is not a time of day")
    seconds = calendar.timegm((*values, 0, 0, 0)) + (float(fraction) if fraction else 0.0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:] or 0) * 60)
    return float(seconds)


def boolean_value(text: str) -> float:
    """true / yes / 1 → 1.0, false / no / 0 → 0.0 (any case, surrounding spaces); ValueError else."""
    word = text.strip().lower()
    if word in TRUE_WORDS or word == "1":
        return 1.0
    if word in FALSE_WORDS or word == "0":
        return 0.0
    raise ValueError(f"{text!r} is not true/false or yes/no")


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
