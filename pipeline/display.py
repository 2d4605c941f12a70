"""Aligned text tables: the one renderer behind every table this project prints (make all's summaries,
the parity report, the benchmarks)."""

from __future__ import annotations


def text_table(rows: list[tuple]) -> str:
    """Rows of cells (the first is the header) in left-aligned columns two spaces apart."""
    cells = [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)
