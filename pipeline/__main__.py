"""Command line: `python -m pipeline {train,compile,all}`. Parses arguments and calls `pipeline.run`."""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.cli import add_config_flags, add_launch_flags, add_model_flags, configs_from_args
from pipeline.config import load_config, selected_models
from pipeline.display import warnings_only
from pipeline.errors import PipelineError, disk_error
from pipeline.training import figures


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
            add_launch_flags(sub)
            add_config_flags(sub)
    return parser


def without_launch_flags(argv: list[str]) -> list[str]:
    """The arguments each worker gets: the same, less the ones that start the workers."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--nproc", "--max-restarts"):
            skip = True
        elif not arg.startswith(("--nproc=", "--max-restarts=")):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if getattr(args, "nproc", 1) > 1 and "WORLD_SIZE" not in os.environ:
        from pipeline.distributed import launch
        from pipeline.run import check_writable

        try:
            check_writable(args.runs_dir)  # before any worker starts
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return launch(without_launch_flags(argv), args.nproc, args.max_restarts)
    if args.command != "compile" and os.environ.get("RANK", "0") == "0":
        figures.start()  # before torch's import: the figures' process imports matplotlib meanwhile
    from pipeline.distributed import SINGLE, die_with_launcher, from_environment, shutdown

    die_with_launcher()
    from pipeline.run import builtin_summary, compile_run, summary_line, train_run

    job, log = SINGLE, warnings_only if args.quiet else print
    try:
        if args.command != "compile":
            job = from_environment(args.backend)
        if args.command == "compile":
            names = selected_models(args.model)
            if args.config:
                names = [load_config(args.config).name]
            for name in names:
                log(f"{name}: torch.compile")
                compile_run(args.runs_dir / name, log=log)
            return 0
        reports = []
        for config in configs_from_args(args):
            report = train_run(config, args.runs_dir, progress=not args.quiet, log=log, job=job)
            if args.command == "all" and job.is_main:
                report = compile_run(args.runs_dir / config.name, log=log)
            reports.append(report)
            if args.quiet and job.is_main:
                print(f"{config.name}: {summary_line(report)} → {args.runs_dir / config.name}")
        if args.command == "all" and job.is_main and not args.quiet:
            print()
            print(builtin_summary(reports))
        return 0
    except (PipelineError, OSError) as exc:  # OSError: a full disk, a read-only or forbidden folder
        rank = f"rank {job.rank}: " if job.world > 1 else ""
        print(f"error: {rank}{disk_error(exc) if isinstance(exc, OSError) else exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if job.world == 1 and "WORLD_SIZE" not in os.environ:  # under torchrun the launcher says it
            print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutdown(job)


def exit_without_teardown(code: int) -> None:
    """End a `train` process at once: with torch loaded, the interpreter's teardown takes 0.6 s
    (`python -c 'import torch'`: 1.9 s, 1.1 s ending this way), a sixth of a small table's run. By now
    every file the run wrote is closed and synced and the process group is gone; only the output streams
    are flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    if sys.argv[1:2] == ["train"]:  # `all` and `compile` leave torch.compile's workers to the teardown
        exit_without_teardown(code)
    sys.exit(code)
