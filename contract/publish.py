"""Atomic publication of files and directories: readers see the old version or the new, never half."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

AT_FDCWD, RENAME_EXCHANGE = -100, 2  # linux/fcntl.h, linux/fs.h


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


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def publish_dir(staged: Path, dest: Path) -> None:
    """Move a fully written `staged` directory to `dest`, replacing what was there. Where the kernel
    can swap two paths atomically, `dest` is at every instant either the old or the new directory."""
    if not dest.exists():
        os.rename(staged, dest)
    elif exchange(staged, dest):
        shutil.rmtree(staged, ignore_errors=True)  # now holds the old version
    else:  # two renames: a crash between them leaves the old version in a hidden sibling
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.rename(dest, old / dest.name)
        os.rename(staged, dest)
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(dest: Path) -> None:
    """Remove hidden leftovers of interrupted writes of `dest` (see `staging_dir`)."""
    for leftover in dest.parent.glob(f".{dest.name}.*"):
        if leftover.suffix in (".tmp", ".old"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
