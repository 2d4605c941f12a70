"""Command line: `python -m pipeline {train,compile,all}`. Parses arguments and calls `pipeline.run`."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli import add_config_flags, add_model_flags, configs_from_args
from pipeline.config import load_config, selected_models
from pipeline.errors import PipelineError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("train", "train models and write their runs"),
        ("compile", "torch.compile trained models and check them against eager"),
        ("all", "train, then compile and check, then print a summary"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        add_model_flags(sub)
        if command != "compile":
            add_config_flags(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.run import builtin_summary, compile_run, train_run

    try:
        if args.command == "compile":
            names = selected_models(args.model)
            if args.config:
                names = [load_config(args.config).name]
            for name in names:
                print(f"{name}: torch.compile")
                compile_run(args.runs_dir / name)
            return 0
        reports = []
        for config in configs_from_args(args):
            report = train_run(config, args.runs_dir, progress=not args.quiet)
            if args.command == "all":
                report = compile_run(args.runs_dir / config.name)
            reports.append(report)
        if args.command == "all":
            print()
            print(builtin_summary(reports))
        return 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
