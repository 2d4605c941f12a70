"""File descriptors: every connection holds one, and a process that runs out can answer nothing, read no
model and accept no health check (EMFILE). The server raises its soft limit to the hard one at start, and
each transport may hold at most `connection_cap` connections, so that a flood on one port leaves
descriptors for the other port, the repository poll, model files and logs (FD_RESERVE)."""

from __future__ import annotations

import resource

FD_RESERVE = 128  # descriptors kept for what is not a connection: model files, the poll, logs, metrics files
MIN_CONNECTIONS = 16  # a transport's cap is never lower than this, whatever the limit


def raise_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit where allowed; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


def limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(wanted: int, descriptors: int | None = None) -> int:
    """Connections one transport may hold: `wanted`, or less where `descriptors` (this process's limit)
    cannot hold both transports' share and the reserve."""
    descriptors = limit() if descriptors is None else descriptors
    return max(MIN_CONNECTIONS, min(wanted, (descriptors - FD_RESERVE) // 2))
