"""`make all`'s wall time from an empty runs/ and models/, with torch.compile's cache cold, then warm."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run() -> tuple[dict, str]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-makeall-") as scratch:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(scratch) / "inductor-cache")}
        for label in ("cold", "warm"):
            out = Path(scratch) / label
            start = time.perf_counter()
            subprocess.run(
                ["make", "-s", "all", f"RUNS={out / 'runs'}", f"REPOSITORY={out / 'models'}"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            results[f"{label}_compile_cache_s"] = time.perf_counter() - start
    text = (
        f"\n== make all from empty runs/ and models/: {results['cold_compile_cache_s']:.1f}s with "
        f"torch.compile's cache cold, {results['warm_compile_cache_s']:.1f}s warm"
    )
    return results, text
