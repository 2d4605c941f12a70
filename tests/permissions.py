"""Filesystem faults that hold whoever runs the tests: permissions that really refuse (root ignores them,
so a process started with `unprivileged` runs without the capabilities that let root pass them), a
filesystem that is full, and one that is read-only (a small tmpfs, which needs root to mount)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PR_CAPBSET_DROP = 24  # linux/prctl.h
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # linux/capability.h
NOBODY = 65534


def drop_file_capabilities() -> None:
    """In a child before exec: root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH in its bounding set
    (so the program it execs never has them) obeys file modes as any owner does."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def unprivileged():
    """A `preexec_fn` for subprocesses that must meet permission errors: None when not root."""
    return drop_file_capabilities if os.geteuid() == 0 else None


@contextlib.contextmanager
def shared_directory():
    """A directory every user may enter and read (tmp_path's parents are private to their owner)."""
    path = Path(tempfile.mkdtemp(prefix="tabular-deploy-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for inner in path.rglob("*"):  # a test may have left something unreadable
            with contextlib.suppress(OSError):
                inner.chmod(0o755 if inner.is_dir() else 0o644)
        shutil.rmtree(path, ignore_errors=True)


def read_as_nobody(path: Path) -> subprocess.CompletedProcess:
    """`cat path` as the unprivileged user nobody (only possible as root; skips otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("reading as another user needs root")
    return subprocess.run(["cat", str(path)], user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` mounted on `path` (read-only if asked) for the duration; skips where it cannot
    be mounted (not root, no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip() or 'mount failed'}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
