"""Which files a table spec (`--data`) names, and how each is read. One rule for training, `export all
--data` and batch prediction:

- an existing **file** is read whatever its name: `.parquet` / `.pq` as Parquet, anything else as CSV
  (`.tsv` with tabs by default);
- a **folder** is every table file below it, in sorted path order: `.csv`, `.tsv`, `.parquet`, `.pq`,
  and CSV compressed as `.gz`, `.bz2`, `.zst` or `.lz4`. Names starting with `.` or `_` (at any depth:
  Spark's `_SUCCESS`, `.crc` files, `_temporary/`) are skipped, and so is `.txt` (more often a README than
  data; name such a file directly). Folders named `key=value` are hive partitions: their values become
  columns;
- a **glob** (`*`, `?`, `[`; `**` recurses) is the files it matches, filtered like a folder's except that
  `.txt` files it matches are read;
- an existing path is taken as it is before it is tried as a glob; files of both formats together are
  refused.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from contract.errors import ContractError

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}  # suffix → default delimiter
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # a compressed CSV is read as it is (data.csv.gz)
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Resolved:
    files: list[Path]  # in sorted path order
    root: Path | None  # the folder given, when one was: hive partitions are relative to it
    format: str  # "csv" | "parquet"


def format_suffix(path: Path) -> str:
    """The suffix that says the format: `.csv` for data.csv and data.csv.gz."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[-1] in COMPRESSED and suffixes[0] in CSV_SUFFIXES:
        return suffixes[0]
    return suffixes[-1] if suffixes else ""


def is_compressed(path: Path) -> bool:
    return path.suffix.lower() in COMPRESSED


def file_format(path: Path) -> str:
    """How a file is read: Parquet by its suffix, CSV otherwise."""
    return "parquet" if format_suffix(path) in PARQUET_SUFFIXES else "csv"


def default_delimiter(path: Path) -> str:
    return CSV_SUFFIXES.get(format_suffix(path), ",")


def is_table_file(path: Path, txt: bool) -> bool:
    suffix = format_suffix(path)
    if suffix == ".txt":
        return txt
    return suffix in CSV_SUFFIXES or suffix in PARQUET_SUFFIXES


def hidden(path: Path, root: Path) -> bool:
    """Spark and Hadoop leave `_SUCCESS` and `.crc` files beside the data (pyarrow.dataset skips them too)."""
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def resolve(spec: str) -> Resolved:
    """A file, a folder or a glob → its table files and their format (see the module's rule)."""
    path = Path(spec)
    if path.is_file():
        return Resolved([path], None, file_format(path))
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not hidden(p, path) and is_table_file(p, txt=False)
        )
        if not files:
            raise ContractError(f"{path} holds no .csv, .tsv or .parquet file")
        return Resolved(files, path, one_format(spec, files))
    if any(c in spec for c in GLOB_CHARACTERS):
        base = glob_base(spec)
        matched = [Path(p) for p in glob.glob(spec, recursive=True)]
        files = sorted(
            p for p in matched if p.is_file() and not hidden(p, base) and is_table_file(p, txt=True)
        )
        if not files:
            raise ContractError(f"no table file matches {spec}")
        return Resolved(files, None, one_format(spec, files))
    raise ContractError(f"no such file: {path}")


def glob_base(spec: str) -> Path:
    """The folder a glob starts from: its path up to the last separator before the first wildcard."""
    head = spec[: min(spec.index(c) for c in GLOB_CHARACTERS if c in spec)]
    return Path(head) if head.endswith(("/", "\\")) or not head else Path(head).parent


def one_format(spec: str, files: list[Path]) -> str:
    formats = {file_format(p) for p in files}
    if len(formats) > 1:
        raise ContractError(f"{spec} mixes CSV and Parquet files; give one format")
    return formats.pop()


def hive_values(path: Path, root: Path | None) -> dict[str, str]:
    """Hive partition values from the folders between `root` and the file (`city=Paris/part-0.csv`)."""
    if root is None:
        return {}
    return dict(part.split("=", 1) for part in path.relative_to(root).parent.parts if "=" in part)
