"""The runtime's value conversion for the feature kinds whose raw value is not yet the number the graph
takes (contract.features), one function for the named-feature endpoint (`Model.encode_rows`) and batch
prediction (`serve.predict`):

- a date: ISO 8601 text → seconds since the epoch, UTC (a time without a zone is UTC); a number is
  taken as seconds already;
- a boolean: true / yes / 1 → 1.0, false / no / 0 → 0.0 (text any case, or JSON true / false).

Numbers and categories keep the runtime's own rules (`Model.encode_value`).
"""

from __future__ import annotations

from contract.features import boolean_value, date_seconds


def converted(kind: str, value) -> float | None:
    """`value` (not missing) of a feature of `kind` as the graph takes it; None when the kind's value is
    read as a number as it is; ValueError (worded for the user) when it cannot be one."""
    if kind == "date" and isinstance(value, str):
        return date_seconds(value)
    if kind == "boolean":
        if isinstance(value, str):
            return boolean_value(value)
        if isinstance(value, (bool, int, float)) and value in (0, 1):
            return float(value)
        raise ValueError(f"{value!r} is not true/false or yes/no")
    return None
