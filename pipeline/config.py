"""The run configuration: one dataclass, loaded from TOML and command-line flags, strictly checked."""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from contract.errors import ContractError
from contract.repository import MODEL_NAME, TASKS
from contract.tables import delimiter_from
from pipeline.errors import PipelineError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN_DIR = Path(__file__).parent / "builtin"


def option(default, help: str):
    """A config field: its default and the one-line help of its flag (and of its config-file key)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(kw_only=True)
class RunConfig:
    name: str = option("", "model name in the repository, [A-Za-z0-9_.-]+ (default: the table's file name)")
    data: str = option(
        "", "the table: a CSV or Parquet file, a directory or a glob (relative to the config file)"
    )
    target: str = option("", "the column to predict")
    task: str = option("", "binary | multiclass | regression; inferred from the target when empty")
    positive: str = option(
        "", "binary: the target value that is the positive class (else exactly two values)"
    )
    class_names: list[str] = option([], "display names in class order (binary: [neg, pos])")
    class_names_csv: str = option("", "two-column CSV (class value, display name); relative like `data`")
    categorical: list[str] = option([], "columns one-hot encoded (text ones are inferred)")
    ignore: list[str] = option([], "identifier columns left out of the features")
    delimiter: str = option("", "CSV field separator, or tab (default: sniffed from the header: , ; tab |)")
    # -- reading the table as it was meant (README "Your own table") --
    decimal: str = option("", "CSV decimal mark, . or , (default: ',' when a ;-separated table writes 3,75)")
    keep_columns: list[str] = option([], "columns kept as features although they look like identifiers")
    cv: int = option(0, "k-fold cross-validation over the training rows before the final fit (0: none)")
    max_categories: int = option(100, "per categorical column; the rarest beyond it encode like unseen ones")
    memory_budget: str = option(
        "auto", "cache the encoded table when it fits (auto: a quarter of the memory)"
    )
    hidden: list[int] = option(
        [], "hidden layer sizes; none: from the table, 32 below 6,000 training rows, else 128,128"
    )
    activation: str = option("relu", "between hidden layers: relu | tanh | sigmoid | none")
    dropout: float = option(0.0, "dropout after each hidden activation")
    clip: float = option(
        3.0, "standardized numbers soft-clipped to about ±clip inside the model, z/sqrt(1+(z/clip)²) (0: off)"
    )
    lr: float = option(
        0.0, "peak SGD learning rate of the warm-up + cosine schedule (0: 0.05 x sqrt(global batch / 32))"
    )
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(1e-4, "SGD L2 penalty")
    batch_size: int = option(0, "rows per SGD step and process (0: from the training rows, 32 to 512)")
    epochs: int = option(0, "epochs; the schedule ends at the last (0: about 4,000 steps, 20 to 200)")
    patience: int = option(
        0, "epochs without a better validation loss before stopping (0: epochs / 4, at least 10)"
    )
    val_fraction: float = option(0.2, "share of rows for validation (early stopping)")
    test_fraction: float = option(0.2, "share of rows held out for the test metrics")
    threshold: str = option(
        "0.5", "binary: label 1 when probability >= threshold; auto: the one with the best F1 on validation"
    )
    class_weight: str = option("none", "classification: none | balanced (each class weighs the same in all)")
    seed: int = option(0, "seeds the split, the initial weights and the batch order")

    def __post_init__(self) -> None:
        if isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool):
            self.threshold = repr(float(self.threshold))  # a number in a config file
        check_types(self)

    def resolve(self, base: Path) -> RunConfig:
        """Copy with `data` and `class_names_csv` made absolute against `base`."""
        out = dataclasses.replace(self)
        for key in ("data", "class_names_csv"):
            value = getattr(out, key)
            if value and not Path(value).is_absolute():
                setattr(out, key, str((base / value).resolve()))
        return out

    def validate(self) -> None:
        """Checks that need several fields."""
        if not self.name or not MODEL_NAME.fullmatch(self.name):
            raise PipelineError(f"model name {self.name!r} must match {MODEL_NAME.pattern}")
        if not self.data:
            raise PipelineError("no table given: set `data` in the config or pass --data FILE")
        if not self.target:
            raise PipelineError("no target column given: set `target` or pass --target COLUMN")
        if self.task and self.task not in TASKS:
            raise PipelineError(f"task {self.task!r} must be one of: {', '.join(TASKS)}")
        if self.activation not in ("relu", "tanh", "sigmoid", "none"):
            raise PipelineError(f"activation {self.activation!r} must be relu, tanh, sigmoid or none")
        if any(h <= 0 for h in self.hidden):
            raise PipelineError(f"hidden sizes must be positive, got {self.hidden}")
        if self.clip < 0:
            raise PipelineError(f"clip must be 0 (off) or positive, got {self.clip}")
        if not 0 <= self.dropout < 1:
            raise PipelineError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.lr, self.batch_size, self.epochs, self.patience) < 0:
            raise PipelineError("lr, batch_size, epochs and patience must be positive (or 0: from the table)")
        fractions = (self.val_fraction, self.test_fraction)
        if not all(0 < f < 1 for f in fractions) or sum(fractions) >= 0.9:
            raise PipelineError("val_fraction and test_fraction must be in (0, 1) and leave >= 10% to train")
        if self.threshold != "auto" and not 0 < fixed_threshold(self.threshold) < 1:
            raise PipelineError(f"threshold must be auto or in (0, 1), got {self.threshold}")
        if self.class_weight not in ("none", "balanced"):
            raise PipelineError(f"class_weight {self.class_weight!r} must be none or balanced")
        if self.target in self.categorical or self.target in self.ignore:
            raise PipelineError(f"target {self.target!r} cannot also be categorical or ignored")
        try:
            delimiter_from(self.delimiter or ",")
        except ContractError as exc:
            raise PipelineError(str(exc)) from None
        if self.decimal not in ("", ".", ","):
            raise PipelineError(f"decimal must be . or , got {self.decimal!r}")
        if self.cv and not 2 <= self.cv <= 50:
            raise PipelineError(f"cv must be 0 (none) or a number of folds from 2 to 50, got {self.cv}")
        if self.target in self.keep_columns:
            raise PipelineError(f"target {self.target!r} is not a feature to keep")
        if self.max_categories < 1:
            raise PipelineError(f"max_categories must be positive, got {self.max_categories}")


def fixed_threshold(text: str) -> float:
    """The threshold's number (NaN for `auto` or text that is not one)."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
HINTS = typing.get_type_hints(RunConfig)
ALIASES = {"csv": "data"}  # older key → field


def field_help() -> dict[str, str]:
    """Each field's help text (its `option`): the help of its flag."""
    return {name: f.metadata["help"] for name, f in FIELDS.items()}


def check_types(config: RunConfig) -> None:
    for name, hint in HINTS.items():
        value = getattr(config, name)
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, name, float(value))
            continue
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            ok = isinstance(value, list) and all(
                isinstance(v, item) and not isinstance(v, bool) for v in value
            )
        else:
            ok = isinstance(value, hint) and not isinstance(value, bool)
        if not ok:
            shown = getattr(hint, "__name__", str(hint))
            raise PipelineError(f"config field {name!r} must be {shown}, got {value!r}")


def config_from_dict(values: dict, source: str) -> RunConfig:
    values = {ALIASES.get(k, k): v for k, v in values.items()}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise PipelineError(f"{source}: unknown config key(s) {', '.join(unknown)}")
    return RunConfig(**values)


def load_config(path: Path, overrides: dict | None = None) -> RunConfig:
    """Read a TOML config, apply overrides (already typed), resolve relative paths."""
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"no such config file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{path}: not valid TOML ({exc})") from None
    values.setdefault("name", path.stem)
    values.update(overrides or {})
    return config_from_dict(values, str(path)).resolve(path.parent)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def selected_models(values: list[str]) -> list[str]:
    """`--model a --model b,c` → [a, b, c]; no --model → every built-in model."""
    return [name for value in values for name in value.split(",") if name] or builtin_names()


def builtin_config(name: str, overrides: dict | None = None) -> RunConfig:
    if name not in builtin_names():
        raise PipelineError(f"no built-in model {name!r}; built-ins: {', '.join(builtin_names())}")
    return load_config(BUILTIN_DIR / f"{name}.toml", overrides)


def describe(config: RunConfig) -> str:
    """The resolved configuration, one `key = value` per line, printed at the start of a run."""
    return "\n".join(f"  {k} = {v!r}" for k, v in dataclasses.asdict(config).items())
