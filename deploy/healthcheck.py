"""The image's HEALTHCHECK: exit 0 when the server in this container answers 200 on its readiness endpoint,
1 otherwise (with the reason on one line). Standard library only: a slim image has no curl.

The server listens where PID 1 (the server itself, exec'd by the image's ENTRYPOINT) was told to: its
`--port N` / `--port=N` and `--host` arguments, else SERVE_PORT / SERVE_HOST, else the defaults, the same
precedence as serve/__main__.py. A wildcard host (0.0.0.0, ::) is asked on loopback.
"""

from __future__ import annotations

import os
import sys
import urllib.request

READY = "/v2/health/ready"
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def option(argv: list[str], flag: str) -> str | None:
    """The last value given to `flag` (`--flag V` or `--flag=V`) in argv, as argparse reads it."""
    value = None
    for k, arg in enumerate(argv):
        if arg == flag and k + 1 < len(argv):
            value = argv[k + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def ready_url(argv: list[str], environ: dict) -> str:
    port = option(argv, "--port") or environ.get("SERVE_PORT") or "8000"
    host = option(argv, "--host") or environ.get("SERVE_HOST") or "127.0.0.1"
    host = WILDCARDS.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{int(port)}{READY}"


def main() -> int:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        argv = []
    url = ready_url(argv, dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError, HTTPError (503: not ready), timeouts, refused connections
        print(f"not ready: {url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
