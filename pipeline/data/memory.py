"""Memory of a training process: the budget that decides between caching a table and streaming it, and
how freed batch buffers go back to the operating system."""

from __future__ import annotations

import contextlib
import ctypes
import os

from pipeline.errors import PipelineError

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)


def memory_budget(text: str) -> int:
    """Bytes: "auto" (a quarter of the machine's memory), or a size such as 512MB, 2G, 1000000."""
    if text == "auto":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = value.rstrip("KMGT"), value[len(value.rstrip("KMGT")) :]
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise PipelineError(f"memory_budget {text!r} must be 'auto' or a size like 512MB or 2GB") from None


def libc():
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libc.so.6")
    return None


def map_large_buffers(threshold: int = 1 << 20) -> None:
    """Serve buffers of `threshold` bytes and more from their own mappings, so freeing one returns it to
    the OS. (glibc raises this threshold as buffers are freed, after which a batch-sized buffer comes from
    the heap and its memory stays with the process.)"""
    c = libc()
    if c is not None and hasattr(c, "mallopt"):
        c.mallopt(M_MMAP_THRESHOLD, threshold)


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (after the first pass over a table)."""
    c = libc()
    if c is not None and hasattr(c, "malloc_trim"):
        c.malloc_trim(0)
