"""Command line: `python -m export {export,verify,all}`. Parses arguments and calls `export.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.run import export_run, summary_table, verify_published
from export.verify import VerificationError
from pipeline.config import builtin_config, builtin_names, selected_models
from pipeline.errors import PipelineError
from pipeline.run import compile_run, train_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("export", "export trained runs to the model repository, verified"),
        ("verify", "re-verify published models against their checkpoints"),
        ("all", "train, compile, export and verify the built-in models; print a summary"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument(
            "--model",
            action="append",
            default=[],
            help=f"model name (repeatable; default the built-ins: {', '.join(builtin_names())})",
        )
        sub.add_argument("--runs-dir", type=Path, default=Path("runs"), help="training runs (default runs/)")
        sub.add_argument(
            "--repository", type=Path, default=Path("models"), help="the model repository (default models/)"
        )
        sub.add_argument(
            "--keep-versions",
            action="store_true",
            help="publish as the next version and keep older ones (default: replace version 1)",
        )
        sub.add_argument("--quiet", action="store_true", help="no training progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = selected_models(args.model)
    try:
        manifests = []
        for name in names:
            run_dir = args.runs_dir / name
            if args.command == "verify":
                verify_published(run_dir, args.repository)
                continue
            if args.command == "all":
                train_run(builtin_config(name), args.runs_dir, progress=not args.quiet)
                compile_run(run_dir)
            manifests.append(export_run(run_dir, args.repository, args.keep_versions))
        if args.command == "all":
            print()
            print(summary_table(manifests))
        return 0
    except (PipelineError, VerificationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
