"""`python -m bench`: run the benchmark sections, print their tables, write all numbers to one JSON file."""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.report import cpu_hog

SECTIONS = (
    "inprocess",
    "http",
    "grpc",
    "warmup",
    "payloads",
    "training",
    "data",
    "predict",
    "makeall",
    "tables",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/results.json"))
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument(
        "--hog", action="store_true", help="run every measurement beside a busy process pinned to core 0"
    )
    parser.add_argument(
        "--tables", default="", help="the tables section: comma-separated names (default: all, or --quick's)"
    )
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    from pipeline.config import builtin_names

    names = builtin_names()
    missing = [n for n in names if not (args.repository / n / "manifest.json").exists()]
    if missing and {"inprocess", "http", "grpc", "warmup", "payloads"} & set(sections):
        print(
            f"error: {', '.join(missing)} not exported in {args.repository}: run `make all` first",
            file=sys.stderr,
        )
        return 2
    results = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hog": args.hog,
    }
    with cpu_hog() if args.hog else contextlib.nullcontext():
        for section in sections:
            text = run_section(section, args, names, results)
            if text is None:
                return 2
            print(text, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nall numbers: {args.out}")
    return 0


def run_section(section: str, args, names: list[str], results: dict) -> str | None:
    """Run one section into `results[section]`; its table as text ("" when skipped, None when unknown)."""
    if section == "inprocess":
        from bench import inprocess

        results[section], text = inprocess.run(
            args.repository,
            args.runs_dir,
            names,
            calls=200 if args.quick else 5000,
            big_calls=6 if args.quick else 60,
        )
    elif section == "http":
        from bench import serving

        results[section], text = serving.run(
            args.repository, seconds=1.0 if args.quick else 10.0, rounds=1 if args.quick else 3
        )
    elif section == "grpc":
        from bench import grpc_serving

        results[section], text = grpc_serving.run(
            args.repository, seconds=1.0 if args.quick else 10.0, rounds=1 if args.quick else 3
        )
    elif section == "warmup":
        from bench import warmup

        results[section], text = warmup.run(
            args.repository, starts=2 if args.quick else 5, updates=3 if args.quick else 20
        )
    elif section == "payloads":
        from bench import payload_log

        results[section], text = payload_log.run(
            args.repository, seconds=1.0 if args.quick else 10.0, rounds=1 if args.quick else 3
        )
    elif section == "training":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            return "\n== training: skipped (scikit-learn not installed: pip install -e '.[bench]')"
        from bench import training

        with tempfile.TemporaryDirectory(prefix="bench-runs-") as runs:
            results[section], text = training.run(
                names,
                [0] if args.quick else [0, 1, 2, 3, 4],
                Path(runs),
                scale_rows=20_000 if args.quick else 1_000_000,
            )
            scaling, scaling_text = training.scaling_case(Path(runs), 50_000 if args.quick else 1_000_000)
            results[section]["scaling"] = scaling
            text += scaling_text
    elif section == "data":
        from bench import data

        with tempfile.TemporaryDirectory(prefix="bench-data-") as workdir:
            results[section], text = data.run_section(
                Path(workdir),
                rows=50_000 if args.quick else 1_000_000,
                big_rows=200_000 if args.quick else 20_000_000,
                rounds=1 if args.quick else 3,
            )
    elif section == "predict":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return "\n== predict: skipped (pyarrow not installed: pip install -e '.[batch]')"
        from bench import batch_predict

        results[section], text = batch_predict.run(
            n_rows=50_000 if args.quick else 1_000_000, rounds=1 if args.quick else 3
        )
    elif section == "makeall":
        from bench import makeall

        results[section], text = makeall.run()
    elif section == "tables":
        try:
            import lightgbm  # noqa: F401
            import pandas  # noqa: F401
        except ImportError:
            return "\n== tables: skipped (lightgbm, pandas not installed: pip install -e '.[bench]')"
        from bench import public_tables, table_suite

        chosen = args.tables.split(",") if args.tables else None
        quick = public_tables.QUICK if args.quick else [t.name for t in public_tables.TABLES]
        results[section], text = table_suite.run(
            chosen or quick, args.out.parent / "tables", max_rows=300 if args.quick else None, hog=args.hog
        )
    else:
        print(f"error: unknown section {section!r}", file=sys.stderr)
        return None
    return text


if __name__ == "__main__":
    sys.exit(main())
