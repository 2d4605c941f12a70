"""Atomic publication of files and directories: readers see the old version or the new, never half.

What is published is readable as the umask says (0755 directories and 0644 files with the usual 022), as
any file the process writes would be: a server running as another user (a container's UID 1000) must
read the models and runs. tempfile's mkstemp and mkdtemp would make them 0600 and 0700 whatever the
umask, so the temporary names here are made the same way, with the ordinary modes."""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
from pathlib import Path

AT_FDCWD, RENAME_EXCHANGE = -100, 2  # linux/fcntl.h, linux/fs.h


def atomic_write(path: Path, write) -> None:
    """Call `write(binary_file)` on a temporary file beside `path`, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_file(path.parent / f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a write's error names no file: say which
            exc.filename = str(path)
        raise


def staging_dir(dest: Path) -> Path:
    """An empty temporary directory beside `dest` (same filesystem, so a rename publishes it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return temporary_dir(dest.parent / f".{dest.name}.", ".tmp")


def temporary_file(prefix: Path, suffix: str) -> tuple[int, Path]:
    """A new file `prefix<random>suffix`, opened for writing, mode 0666 less the umask."""
    while True:
        path = Path(f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), path
        except FileExistsError:
            continue


def temporary_dir(prefix: Path, suffix: str) -> Path:
    """A new empty directory `prefix<random>suffix`, mode 0777 less the umask."""
    while True:
        path = Path(f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue


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
        old = temporary_dir(dest.parent / f".{dest.name}.", ".old")
        os.rename(dest, old / dest.name)
        os.rename(staged, dest)
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(dest: Path) -> None:
    """Remove hidden leftovers of interrupted writes of `dest` (see `staging_dir`)."""
    for leftover in dest.parent.glob(f".{dest.name}.*"):
        if leftover.suffix in (".tmp", ".old"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
