"""Atomic publication of files and directories: readers see the old version or the new, never half."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """Call `write(binary_file)` on a temporary file beside `path`, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def staging_dir(dest: Path) -> Path:
    """An empty temporary directory beside `dest` (same filesystem, so a rename publishes it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))


def publish_dir(staged: Path, dest: Path) -> None:
    """Move a fully written `staged` directory to `dest`, replacing what was there."""
    if not dest.exists():
        os.rename(staged, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.rename(dest, old / dest.name)
    os.rename(staged, dest)
    shutil.rmtree(old, ignore_errors=True)
