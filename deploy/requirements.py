"""The image's third-party requirements, read from pyproject.toml: the base dependencies (the runtime), plus
the `batch` extra for the batch variant. The Containerfile's build stage runs this file to install them in
a layer of their own, before the project's source is copied (a source edit then reuses that layer).

    python3 deploy/requirements.py pyproject.toml VARIANT   # one requirement a line
"""

from __future__ import annotations

import sys
from pathlib import Path

VARIANTS = {"runtime": (), "batch": ("batch",)}  # variant → the extras it adds to the base dependencies


def requirements(pyproject: Path, variant: str) -> list[str]:
    if variant not in VARIANTS:
        raise ValueError(f"VARIANT must be one of {', '.join(VARIANTS)}, not {variant!r}")
    import tomllib  # Python 3.11+ (the image's); imported here so `python -m deploy` runs on 3.10 too

    project = tomllib.loads(Path(pyproject).read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return list(project["dependencies"]) + [r for extra in VARIANTS[variant] for r in extras[extra]]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: requirements.py PYPROJECT VARIANT", file=sys.stderr)
        return 2
    try:
        print("\n".join(requirements(Path(argv[0]), argv[1])))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
