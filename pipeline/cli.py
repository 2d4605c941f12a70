"""The command-line flags shared by `python -m pipeline` and `python -m export`: which models to run and
every `RunConfig` field as a flag (help and default from the field's comment in `pipeline.config`)."""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

from pipeline.config import (
    ALIASES,
    FIELDS,
    HINTS,
    RunConfig,
    builtin_config,
    builtin_names,
    config_from_dict,
    field_help,
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


def shown_default(name: str) -> str:
    value = getattr(RunConfig(), name)
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return repr(value) if value != "" else "none"


def add_model_flags(parser: argparse.ArgumentParser, runs_dir: bool = True) -> None:
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help=f"built-in model (repeatable; default all: {', '.join(builtin_names())})",
    )
    parser.add_argument("--config", type=Path, help="a TOML config file for your own table")
    if runs_dir:
        parser.add_argument(
            "--runs-dir", type=Path, default=Path("runs"), help="where runs go (default runs/)"
        )
    parser.add_argument(
        "--quiet", action="store_true", help="print only warnings, errors and each model's final line"
    )


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """How many processes train (see `pipeline.distributed`); not part of the model's config."""
    group = parser.add_argument_group("processes (torchrun: torch.distributed.run)")
    group.add_argument(
        "--nproc", type=int, default=1, help="train on N processes of this machine (default: 1)"
    )
    group.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        help="with --nproc: restart the group this many times after a failed worker, resuming from the "
        "last completed epoch (default: 0)",
    )
    group.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "gloo", "nccl"],
        help="torch.distributed backend (default: auto, NCCL with CUDA, else gloo)",
    )


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Every config field as --flag (lists comma-separated); `--data` also answers to `--csv`."""
    group = parser.add_argument_group(
        "config fields (your own table needs only --data and --target; flags override a --config file)"
    )
    helps = field_help()
    aliases = {field: old for old, field in ALIASES.items()}
    for name in FIELDS:
        flags = [f"--{name.replace('_', '-')}"]
        if name in aliases:
            flags.append(f"--{aliases[name]}")
        hint = HINTS[name]
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
        metavar = "A,B,..." if item is not hint else {int: "N", float: "NUM"}.get(item, "TEXT")
        group.add_argument(
            *flags,
            dest=f"field_{name}",
            metavar=metavar,
            help=f"{helps[name]} (default: {shown_default(name)})".replace("%", "%%"),
        )


def default_name(data: str) -> str:
    """A model name from the table's path: its file (or folder) name, made a valid name."""
    path = Path(data.split("*")[0].rstrip("/") or ".")
    stem = path.stem if path.suffix else path.name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip("._") or "model"


def configs_from_args(args) -> list[RunConfig]:
    overrides = {
        name: parse_field(name, getattr(args, f"field_{name}"))
        for name in FIELDS
        if getattr(args, f"field_{name}", None) is not None
    }
    if args.config:
        return [load_config(args.config, overrides)]
    if overrides.get("data"):  # a table given entirely by flags
        overrides.setdefault("name", default_name(overrides["data"]))
        return [config_from_dict(overrides, "command line").resolve(Path.cwd())]
    return [builtin_config(name, overrides) for name in selected_models(args.model)]
