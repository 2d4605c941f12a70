"""What the command line prints: aligned text tables (the one renderer behind make all's summaries, the
parity report, the benchmarks) and the log `--quiet` keeps (warnings only)."""

from __future__ import annotations


def text_table(rows: list[tuple]) -> str:
    """Rows of cells (the first is the header) in left-aligned columns two spaces apart."""
    cells = [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def warnings_only(*parts) -> None:
    """`--quiet`'s log: a warning is printed, anything else dropped (errors go to stderr on their own
    and the command prints its final line itself)."""
    line = " ".join(map(str, parts))
    if line.startswith("warning:"):
        print(line)
