"""Command line: `python -m pipeline {train,compile,all}`. Parses arguments and calls `pipeline.run`."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from pipeline.config import (
    FIELDS,
    HINTS,
    builtin_config,
    builtin_names,
    config_from_dict,
    load_config,
    selected_models,
)
from pipeline.errors import PipelineError


def parse_field(name: str, text: str):
    hint = HINTS[name]
    item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
    try:
        if typing.get_origin(hint) is list:
            return [item(v.strip()) for v in text.split(",") if v.strip()]
        return item(text)
    except ValueError:
        raise PipelineError(f"--{name.replace('_', '-')}: {text!r} is not a valid {item.__name__}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("train", "train models and write their runs"),
        ("compile", "torch.compile trained models and check them against eager"),
        ("all", "train, then compile and check, then print a summary"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument(
            "--model",
            action="append",
            default=[],
            help=f"built-in model (repeatable; default all: {', '.join(builtin_names())})",
        )
        sub.add_argument("--config", type=Path, help="a TOML config file for your own table")
        sub.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs go (default runs/)")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        if command != "compile":
            fields = sub.add_argument_group("config fields (override the config file; lists comma-separated)")
            for name in FIELDS:
                fields.add_argument(f"--{name.replace('_', '-')}", dest=f"field_{name}", metavar="VALUE")
    return parser


def configs_from_args(args) -> list:
    overrides = {
        name: parse_field(name, getattr(args, f"field_{name}"))
        for name in FIELDS
        if getattr(args, f"field_{name}", None) is not None
    }
    if args.config:
        return [load_config(args.config, overrides)]
    if overrides.get("csv"):  # a table given entirely by flags
        overrides.setdefault("name", Path(overrides["csv"]).stem)
        return [config_from_dict(overrides, "command line").resolve(Path.cwd())]
    names = selected_models(args.model)
    return [builtin_config(name, overrides) for name in names]


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
