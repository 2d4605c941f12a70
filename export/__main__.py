"""Command line: `python -m export {export,verify,all}`. Parses arguments and calls `export.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.run import export_run, summary_table, verify_published
from export.verify import VerificationError
from pipeline.cli import add_config_flags, add_model_flags, configs_from_args
from pipeline.config import load_config, selected_models
from pipeline.errors import PipelineError
from pipeline.run import compile_run, train_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("export", "export trained runs to the model repository, verified"),
        ("verify", "re-verify published models against their checkpoints"),
        ("all", "train, compile, export and verify (the built-in models, or your table); print a summary"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        add_model_flags(sub)
        sub.add_argument(
            "--repository", type=Path, default=Path("models"), help="the model repository (default models/)"
        )
        sub.add_argument(
            "--keep-versions",
            action="store_true",
            help="publish as the next version and keep older ones (default: replace version 1)",
        )
        sub.add_argument(
            "--allow-breaking",
            action="store_true",
            help="publish even when the input schema breaks the published one's (features removed, added, "
            "reordered or retyped, categories dropped or recoded, classes changed); says what breaks",
        )
        if command == "all":
            add_config_flags(sub)
    return parser


def model_names(args) -> list[str]:
    if args.config:
        return [load_config(args.config).name]
    return selected_models(args.model)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifests = []
        if args.command == "all":
            for config in configs_from_args(args):
                train_run(config, args.runs_dir, progress=not args.quiet)
                compile_run(args.runs_dir / config.name)
                manifests.append(
                    export_run(
                        args.runs_dir / config.name, args.repository, args.keep_versions, args.allow_breaking
                    )
                )
            print()
            print(summary_table(manifests))
            return 0
        for name in model_names(args):
            if args.command == "verify":
                verify_published(args.runs_dir / name, args.repository)
            else:
                export_run(args.runs_dir / name, args.repository, args.keep_versions, args.allow_breaking)
        return 0
    except (PipelineError, VerificationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
